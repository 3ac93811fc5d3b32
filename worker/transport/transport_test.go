package transport_test

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/reportmailer/reportmailer/worker/transport"
)

// oneShot is a body that, like smithy-go's streams, cannot be read twice.
type oneShot struct{ r io.Reader }

func (o *oneShot) Read(p []byte) (int, error) { return o.r.Read(p) }
func (o *oneShot) Close() error               { o.r = strings.NewReader(""); return nil }

func TestBodyIsBufferedAndRewindable(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	defer srv.Close()

	var seen *http.Request
	c := transport.Wrap(doFunc(func(r *http.Request) (*http.Response, error) {
		seen = r
		return http.DefaultClient.Do(r)
	}))
	req, _ := http.NewRequest("POST", srv.URL, &oneShot{r: strings.NewReader(`{"QueueUrl":"q"}`)})
	req.ContentLength = 16
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != `{"QueueUrl":"q"}` {
		t.Errorf("server got %q", got)
	}
	if seen.GetBody == nil {
		t.Fatal("GetBody not set: net/http cannot rewind the body")
	}
	again, _ := seen.GetBody()
	b, _ := io.ReadAll(again)
	if string(b) != `{"QueueUrl":"q"}` {
		t.Errorf("GetBody gave %q", b)
	}
}

type doFunc func(*http.Request) (*http.Response, error)

func (f doFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

func TestWrapKeepsTheSDKsCABundle(t *testing.T) {
	// The loader applies AWS_CA_BUNDLE only to its own client type; we
	// must wrap what it built rather than hand it ours.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, certPEM(srv), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	t.Setenv("AWS_REGION", "us-east-1")
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := transport.Wrap(cfg.HTTPClient)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request with the CA bundle: %v", err)
	}
	resp.Body.Close()
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// TestConcurrentRequestsReuseConnections: 32 requests at once, twice.
// The second round finds the first round's connections idle, rather
// than dialling again past the SDK's default of 10 idle per host.
func TestConcurrentRequestsReuseConnections(t *testing.T) {
	const n = 32
	var mu sync.Mutex
	dialled := 0
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			dialled++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	c := transport.Wrap(nil)
	round := func() int {
		mu.Lock()
		before := dialled
		mu.Unlock()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		for range n { // all n in flight at once, each on its own connection
			<-arrived
		}
		release <- struct{}{}
		for range n - 1 {
			release <- struct{}{}
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return dialled - before
	}
	if first := round(); first != n {
		t.Fatalf("first round dialled %d connections, want %d", first, n)
	}
	if again := round(); again > 4 {
		t.Errorf("second round dialled %d new connections; want the %d idle ones reused", again, n)
	}
}
