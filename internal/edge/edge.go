// Package edge is a local stand-in for a CloudFront distribution with
// an S3 origin and a trusted key group: it checks each signed URL with
// the public keys it trusts, then streams the object from S3. It lets
// the demo's links really open, and lets tests follow them.
package edge

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker/link"
)

// Edge serves signed URLs from one bucket.
type Edge struct {
	S3     *s3.Client
	Bucket string
	// Keys are the trusted public keys by key id: the key group.
	Keys   map[string]crypto.PublicKey
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
}

// ServeHTTP answers like CloudFront: 403 for a link that does not
// verify, 404 for a missing object, and the object otherwise (Range
// requests included, checked against expiry like any other).
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	full := "http://" + r.Host + r.URL.RequestURI()
	ip, _ := netip.ParseAddr(host(r.RemoteAddr))
	v, err := link.VerifyFrom(full, func(id string) (crypto.PublicKey, bool) {
		k, ok := e.Keys[id]
		return k, ok
	}, now(), ip)
	if err != nil {
		var ve *link.VerifyError
		reason := "malformed"
		if errors.As(err, &ve) {
			reason = ve.Reason
		}
		e.log().Info("edge: denied", "path", r.URL.EscapedPath(), "reason", reason)
		http.Error(w, "403 Forbidden: "+reason, http.StatusForbidden)
		return
	}
	key, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/"))
	if err != nil {
		http.Error(w, "400 Bad Request", http.StatusBadRequest)
		return
	}
	in := &s3.GetObjectInput{Bucket: &e.Bucket, Key: &key}
	if rg := r.Header.Get("Range"); rg != "" {
		in.Range = &rg
	}
	out, err := e.S3.GetObject(r.Context(), in)
	if err != nil {
		e.log().Info("edge: object", "key", key, "err", err)
		http.Error(w, "404 Not Found", http.StatusNotFound)
		return
	}
	defer out.Body.Close()
	h := w.Header()
	h.Set("Content-Type", aws.ToString(out.ContentType))
	if out.ContentLength != nil {
		h.Set("Content-Length", fmt.Sprint(*out.ContentLength))
	}
	status := http.StatusOK
	if out.ContentRange != nil {
		h.Set("Content-Range", *out.ContentRange)
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if r.Method == http.MethodGet {
		io.Copy(w, out.Body)
	}
	e.log().Info("edge: served", "key", key, "key_id", v.KeyID, "status", status)
}

func (e *Edge) log() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

func host(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// Server is an Edge listening on 127.0.0.1.
type Server struct {
	URL string // http://127.0.0.1:port
	srv *http.Server
}

// Start serves e on a free port of 127.0.0.1 until Close.
func Start(e *Edge) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("edge listen: %w", err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
