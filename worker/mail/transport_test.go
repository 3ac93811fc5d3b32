package mail

// Failures of the transport, made real on 127.0.0.1 and driven through
// the real SES v2 client: which of them may have reached SES decides
// between "retry" and "maybe sent, ask an operator".

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// attempts counts the HTTP requests the SDK makes: one per attempt.
type attempts struct {
	next aws.HTTPClient
	n    atomic.Int32
}

func (a *attempts) Do(r *http.Request) (*http.Response, error) {
	a.n.Add(1)
	return a.next.Do(r)
}

// failingClient is the client newMailer builds (the SDK's HTTP client
// wrapped by transport.Wrap, retryer r), pointed at endpoint, with tweak
// applied to its http.Transport. Retries wait at most a millisecond.
func failingClient(endpoint string, r func() aws.Retryer, tweak func(*http.Transport)) (*sesv2.Client, *attempts) {
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = nil // whatever HTTPS_PROXY says on this machine
		if tweak != nil {
			tweak(tr)
		}
	})
	a := &attempts{next: transport.Wrap(hc)}
	return sesv2.New(sesv2.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		Retryer:      retry.AddWithMaxBackoffDelay(r(), time.Millisecond),
		HTTPClient:   a,
	}), a
}

// forwarder is a handler that counts the requests it receives (a
// request that got this far may have been acted on) and passes each to
// the aws-ses-v2-local at emuURL, which answers it: the tests put their
// broken TLS, plain HTTP and proxies in front of a real SES emulator.
func forwarder(t *testing.T, emuURL string, n *atomic.Int32) http.Handler {
	t.Helper()
	u, err := url.Parse(emuURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:  func(r *httputil.ProxyRequest) { r.SetURL(u) },
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	})
}

// noEmails checks, when t's cleanups run, that the emulator at emuURL
// accepted no email.
func noEmails(t *testing.T, emuURL string) {
	t.Cleanup(func() {
		if sent, err := emulator.SESLocalEmails(context.Background(), emuURL, time.Time{}); err != nil || len(sent) != 0 {
			t.Errorf("the emulator accepted %d emails (%v); want none", len(sent), err)
		}
	})
}

// tlsServer starts an httptest TLS server that does not log the failed
// handshakes the tests provoke; tlsConfig, if not nil, replaces its TLS
// settings. It is closed when t's cleanups run.
func tlsServer(t *testing.T, h http.Handler, tlsConfig *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsConfig != nil {
		srv.TLS = tlsConfig
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// selfSigned returns a certificate for 127.0.0.1 valid from notBefore to
// notAfter, and a pool that trusts it.
func selfSigned(t *testing.T, notBefore, notAfter time.Time) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "reportmailer test"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// silentListener accepts TCP connections on 127.0.0.1 and never says a
// word: a TLS handshake with it can only time out. It is closed, with
// every connection it took, when t's cleanups run.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestFailuresBeforeTheRequestAreNotSent: each failure here happens
// before net/http writes the request, so SES cannot have seen the email.
// It must be an ordinary transient error (the ledger claim is released
// and the message retried), not "may have been accepted", and the SDK
// may retry it. Before, every one of them, a refused connection
// included, was classed as maybe sent, vetoed for retry and
// dead-lettered for an operator: the SDK wraps a transport failure in a
// ResponseError of status 0, which read as "SES answered".
func TestFailuresBeforeTheRequestAreNotSent(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-48 * time.Hour)

	emuURL := emulator.StartSESLocal(t, "")
	noEmails(t, emuURL)

	type setup struct {
		endpoint string
		tweak    func(*http.Transport)
		reached  *atomic.Int32 // requests that reached a server, when one exists
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) setup
		// typed: the error's type alone shows it, without the trace
		// SES.Send adds (see sent).
		typed bool
	}{
		{"connection refused", func(t *testing.T) setup {
			return setup{endpoint: "https://" + closedPort(t)}
		}, true},
		{"certificate from an unknown authority", func(t *testing.T) setup {
			var n atomic.Int32
			srv := tlsServer(t, forwarder(t, emuURL, &n), nil)
			return setup{endpoint: srv.URL, reached: &n} // the client does not trust httptest's CA
		}, true},
		{"certificate for another host", func(t *testing.T) setup {
			var n atomic.Int32
			srv := tlsServer(t, forwarder(t, emuURL, &n), nil)
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			return setup{endpoint: srv.URL, reached: &n, tweak: func(tr *http.Transport) {
				tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "email.us-east-1.amazonaws.com"}
			}}
		}, true},
		{"expired certificate", func(t *testing.T) setup {
			var n atomic.Int32
			cert, pool := selfSigned(t, past.Add(-time.Hour), past)
			srv := tlsServer(t, forwarder(t, emuURL, &n), &tls.Config{Certificates: []tls.Certificate{cert}})
			return setup{endpoint: srv.URL, reached: &n, tweak: func(tr *http.Transport) {
				tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			}}
		}, true},
		{"HTTP response to HTTPS client", func(t *testing.T) setup {
			var n atomic.Int32
			srv := httptest.NewServer(forwarder(t, emuURL, &n))
			t.Cleanup(srv.Close)
			return setup{endpoint: "https://" + srv.Listener.Addr().String(), reached: &n}
		}, true},
		{"TLS handshake timeout", func(t *testing.T) setup {
			return setup{endpoint: "https://" + silentListener(t), tweak: func(tr *http.Transport) {
				tr.TLSHandshakeTimeout = 50 * time.Millisecond
			}}
		}, false},
		{"proxy refuses CONNECT", func(t *testing.T) setup {
			var n, connects atomic.Int32
			target := tlsServer(t, forwarder(t, emuURL, &n), nil)
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodConnect {
					connects.Add(1)
				}
				http.Error(w, "no tunnel for you", http.StatusForbidden)
			}))
			t.Cleanup(proxy.Close)
			t.Cleanup(func() {
				if connects.Load() == 0 {
					t.Error("the proxy saw no CONNECT")
				}
			})
			pu, _ := url.Parse(proxy.URL)
			return setup{endpoint: target.URL, reached: &n, tweak: func(tr *http.Transport) { tr.Proxy = http.ProxyURL(pu) }}
		}, false},
		{"proxy unreachable", func(t *testing.T) setup {
			var n atomic.Int32
			target := tlsServer(t, forwarder(t, emuURL, &n), nil)
			pu := &url.URL{Scheme: "http", Host: closedPort(t)}
			return setup{endpoint: target.URL, reached: &n, tweak: func(tr *http.Transport) { tr.Proxy = http.ProxyURL(pu) }}
		}, true},
	}
	retryers := []struct {
		name string
		r    func() aws.Retryer
	}{{"Retryer", Retryer}, {"PacedRetryer", PacedRetryer}}

	for _, tt := range tests {
		for _, rt := range retryers {
			t.Run(tt.name+"/"+rt.name, func(t *testing.T) {
				t.Parallel()
				s := tt.setup(t)
				client, tries := failingClient(s.endpoint, rt.r, s.tweak)

				_, err := (&SES{Client: client}).Send(context.Background(), hostile())
				if err == nil {
					t.Fatal("sent")
				}
				if worker.IsAmbiguous(err) || worker.IsPermanent(err) || worker.IsHalt(err) {
					t.Errorf("Send: %v\nclassed ambiguous %v, permanent %v, halt %v; want transient: SES never saw the request",
						err, worker.IsAmbiguous(err), worker.IsPermanent(err), worker.IsHalt(err))
				}
				if got := tries.n.Load(); got != 3 {
					t.Errorf("%d attempts; want the SDK's 3: a request that never left is safe to retry (%v)", got, err)
				}
				if s.reached != nil && s.reached.Load() != 0 {
					t.Errorf("%d requests reached the server; the case is not what it claims", s.reached.Load())
				}

				// Without SES.Send's trace, the type of the error decides.
				_, err = client.SendEmail(context.Background(), mustInput(t))
				if c := Classify(err); tt.typed && worker.IsAmbiguous(c) {
					t.Errorf("Classify(%v) without a trace: ambiguous; the error's type shows it came before the request", err)
				}
			})
		}
	}
}

func mustInput(t *testing.T) *sesv2.SendEmailInput {
	t.Helper()
	in, err := (&SES{}).input(hostile())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestFailureAfterTheRequestMayHaveBeenSent: SES (the emulator) accepts
// the email, and the connection is then reset before its answer. That
// stays "may have been accepted", and the SDK must not resend it: the
// emulator holds the email once.
func TestFailureAfterTheRequestMayHaveBeenSent(t *testing.T) {
	t.Parallel()
	emuURL := emulator.StartSESLocal(t, "")
	var want []string
	for name, rt := range map[string]func() aws.Retryer{"retryer": Retryer, "paced-retryer": PacedRetryer} {
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL})
		p.Inject(awsproxy.Fault{Operation: "SendEmail", After: true, Reset: true})
		client, tries := failingClient(p.URL, rt, nil)
		e := hostile()
		e.To = []string{name + "@example.com"}
		want = append(want, e.To[0])
		_, err := (&SES{Client: client}).Send(context.Background(), e)
		if !worker.IsAmbiguous(err) {
			t.Errorf("%s: Send: %v; want ambiguous: the request was written", name, err)
		}
		if c := p.Counts("SendEmail"); tries.n.Load() != 1 || c.Seen != 1 || c.Forwarded != 1 {
			t.Errorf("%s: %d attempts, SendEmail %+v; want 1 attempt, accepted once: a retry could send the email twice", name, tries.n.Load(), c)
		}
	}
	exactlyOnce(t, emuURL, want)
}

// TestCanceledSends: a send cancelled before its request was written
// never left; cancelled after, it may have been accepted. smithy
// reports both as a CanceledError, so only the trace tells them apart.
func TestCanceledSends(t *testing.T) {
	t.Parallel()
	t.Run("before the request", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The listener never answers the handshake; give up once it starts.
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{TLSHandshakeStart: cancel})
		client, _ := failingClient("https://"+silentListener(t), Retryer, nil)
		_, err := (&SES{Client: client}).Send(ctx, hostile())
		if err == nil || worker.IsAmbiguous(err) {
			t.Errorf("Send: %v; want a transient error: the request never left", err)
		}
	})
	t.Run("after the request", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		emuURL := emulator.StartSESLocal(t, "")
		// SES has the whole request and is slow to answer; the caller
		// gives up before it does.
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL, Latency: time.Minute,
			Sleep: func(reqCtx context.Context, _ time.Duration) error {
				cancel()
				<-reqCtx.Done()
				return reqCtx.Err()
			}})
		client, _ := failingClient(p.URL, Retryer, nil)
		_, err := (&SES{Client: client}).Send(ctx, hostile())
		if !worker.IsAmbiguous(err) {
			t.Errorf("Send: %v; want ambiguous: SES had the whole request", err)
		}
		if c := p.Counts("SendEmail"); c.Seen != 1 {
			t.Errorf("SendEmail %+v; want the one request", c)
		}
	})
}

// TestTrustedTLSReachesSES is the control for the certificate cases of
// TestFailuresBeforeTheRequestAreNotSent: the same TLS server in front
// of the emulator, with a certificate the client trusts, delivers the
// email, so those cases fail on the certificate alone.
func TestTrustedTLSReachesSES(t *testing.T) {
	t.Parallel()
	emuURL := emulator.StartSESLocal(t, "")
	var n atomic.Int32
	srv := tlsServer(t, forwarder(t, emuURL, &n), nil)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	client, _ := failingClient(srv.URL, Retryer, func(tr *http.Transport) { tr.TLSClientConfig = &tls.Config{RootCAs: pool} })
	id, err := (&SES{Client: client}).Send(context.Background(), hostile())
	if err != nil || id == "" {
		t.Fatalf("Send = %q, %v; want the emulator's message id", id, err)
	}
	if n.Load() != 1 {
		t.Errorf("%d requests reached the server, want 1", n.Load())
	}
	exactlyOnce(t, emuURL, []string{"cfo@example.com"})
}
