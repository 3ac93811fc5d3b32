package mail

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// throttleProxy is a fault-injecting reverse proxy in front of a real
// SES v2 endpoint (aws-ses-v2-local). It forwards every request, except
// that it answers a SendEmail the way SES answers one over the sending
// rate, HTTP 429 TooManyRequestsException, when
//
//   - more than limit recipients would have been accepted within the
//     last window (a sliding window, as SES's "per second" rate), or
//   - failNext is still above zero (a burst of throttles on demand).
//
// Refused requests do not count towards the window, as at SES. The
// emulators enforce no rate at all; this is the part they lack.
type throttleProxy struct {
	URL string

	limit  int // recipients per window; 0: no limit
	window time.Duration

	mu          sync.Mutex
	failNext    int
	accepted    []arrival // recipients forwarded within the window
	sends       int       // SendEmail requests forwarded
	throttled   int       // SendEmail requests answered with 429
	maxInWindow int       // the most recipients forwarded within any window
}

// arrival is a SendEmail the proxy let through. It is the proxy's own
// bookkeeping, independent of the pacer's window it is there to check.
type arrival struct {
	at time.Time
	n  int
}

// newThrottleProxy starts a proxy to target on 127.0.0.1, stopped when
// t's cleanups run.
func newThrottleProxy(t *testing.T, target string, limit int, window time.Duration) *throttleProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &throttleProxy{limit: limit, window: window}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if !p.admit(recipients(body)) {
				writeThrottle(w)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// admit decides whether a SendEmail for n recipients goes through.
func (p *throttleProxy) admit(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	keep := p.accepted[:0]
	inWindow := 0
	for _, s := range p.accepted {
		if now.Sub(s.at) < p.window {
			keep = append(keep, s)
			inWindow += s.n
		}
	}
	p.accepted = keep
	if p.failNext > 0 || p.limit > 0 && inWindow+n > p.limit {
		if p.failNext > 0 {
			p.failNext--
		}
		p.throttled++
		return false
	}
	p.accepted = append(p.accepted, arrival{now, n})
	p.sends++
	p.maxInWindow = max(p.maxInWindow, inWindow+n)
	return true
}

func (p *throttleProxy) stats() (sends, throttled, maxInWindow int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sends, p.throttled, p.maxInWindow
}

func (p *throttleProxy) throttleNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = n
}

// recipients counts a SendEmail request's recipients, as SES does.
func recipients(body []byte) int {
	var in struct {
		Destination struct {
			ToAddresses, CcAddresses, BccAddresses []string
		}
	}
	if json.Unmarshal(body, &in) != nil {
		return 1
	}
	d := in.Destination
	return max(1, len(d.ToAddresses)+len(d.CcAddresses)+len(d.BccAddresses))
}

// writeThrottle answers as SES v2 (REST-JSON) does over the rate.
func writeThrottle(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", "TooManyRequestsException")
	h.Set("X-Amzn-RequestId", fmt.Sprintf("throttle-%d", time.Now().UnixNano()))
	w.WriteHeader(http.StatusTooManyRequests)
	io.WriteString(w, `{"__type":"TooManyRequestsException","message":"Maximum sending rate exceeded."}`)
}
