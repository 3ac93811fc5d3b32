package transport_test

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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
