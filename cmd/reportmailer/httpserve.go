package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// Health timing. The scheduler ticks every tickEvery; /healthz fails
// once it has not for tickStale. A run is stuck once no stage of it has
// ended (nor the run started) for its budget plus stuckMargin: a long
// paced run that keeps sending is not stuck however long it goes on.
const (
	tickEvery   = 10 * time.Second
	tickStale   = 3 * tickEvery
	stuckMargin = 10 * time.Minute
)

// runner runs one schedule, at most one run at a time, whether cron or
// POST /run started it.
type runner struct {
	name   string
	budget time.Duration
	drain  func(ctx context.Context, id string, slot worker.Slot) runResult // runs with id as its run_id, for the slot
	// digest runs each aligned slot under a heartbeated lease that a
	// replica takes over (runLeased); mode each keeps a create-once one.
	digest bool
	// progress, when set, says when a stage of the schedule last ended.
	progress *progress

	mu      sync.Mutex
	running bool
	started time.Time
}

// runResult is what a run ended with, as POST /run?wait=true shows it.
type runResult struct {
	Schedule string         `json:"schedule"`
	RunID    string         `json:"run_id"`
	Outcome  string         `json:"outcome"`
	Summary  map[string]any `json:"summary"`
	Error    string         `json:"error,omitempty"`
	// whole is set when the run left nothing for a retry: no failure,
	// no halt, no message or pending event left for later. Only then
	// is a slot marked done.
	whole bool
}

// begin marks a run as started, unless one is running.
func (r *runner) begin() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return false
	}
	r.running, r.started = true, time.Now()
	return true
}

// end marks the run as ended.
func (r *runner) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = false
}

// stuck returns how long the run in progress has made no progress
// (since its start or the last stage that ended), when that is past its
// budget and the margin.
func (r *runner) stuck(now time.Time) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	since := r.started
	if p := r.progress.at(); p.After(since) {
		since = p
	}
	d := now.Sub(since)
	return d, r.running && d > r.budget+stuckMargin
}

// server is serve's HTTP side: metrics, probes and send-now.
type server struct {
	logger   *slog.Logger
	metrics  http.Handler
	runners  map[string]*runner
	token    []byte // sha256 of the bearer token; nil: /run refused
	ready    func(context.Context) error
	ctx      context.Context // serve's: cancelled on shutdown
	runs     sync.WaitGroup  // runs POST /run started
	mu       sync.Mutex
	lastTick time.Time

	// shutdown bounds the wait for open requests on stop; default 10 s.
	shutdown time.Duration
}

// tick records that the scheduler is alive.
func (s *server) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastTick = time.Now()
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("POST /run/{schedule}", s.run)
	return mux
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	var problems []string
	s.mu.Lock()
	last := s.lastTick
	s.mu.Unlock()
	if age := now.Sub(last); age > tickStale {
		problems = append(problems, fmt.Sprintf("scheduler: last tick %s ago", age.Round(time.Second)))
	}
	for _, r := range s.runners {
		if d, stuck := r.stuck(now); stuck {
			problems = append(problems, fmt.Sprintf("schedule %s: run has made no progress for %s, past its budget %s plus %s", r.name, d.Round(time.Second), r.budget, stuckMargin))
		}
	}
	probe(w, problems)
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	var problems []string
	if err := s.ready(r.Context()); err != nil {
		problems = strings.Split(err.Error(), "\n")
	}
	probe(w, problems)
}

// probe answers 200 "ok", or 503 with one problem a line.
func probe(w http.ResponseWriter, problems []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(problems) == 0 {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, secret.Redact(strings.Join(problems, "\n")))
}

// run starts a run of a schedule now: 202 at once, or with ?wait=true
// 200 and the run's result when it ends.
func (s *server) run(w http.ResponseWriter, r *http.Request) {
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	switch {
	case s.token == nil:
		http.Error(w, "send-now is off: set http.token or http.token_file", http.StatusForbidden)
		return
	case !strings.EqualFold(scheme, "Bearer"):
		w.Header().Set("WWW-Authenticate", `Bearer realm="reportmailer"`)
		http.Error(w, "a bearer token is required", http.StatusUnauthorized)
		return
	}
	// Hashing first makes the comparison constant-time in the length too.
	got := sha256.Sum256([]byte(strings.TrimLeft(cred, " ")))
	if subtle.ConstantTimeCompare(got[:], s.token) != 1 {
		http.Error(w, "wrong bearer token", http.StatusForbidden)
		return
	}
	name := r.PathValue("schedule")
	rn, ok := s.runners[name]
	if !ok {
		http.Error(w, fmt.Sprintf("no schedule %q", name), http.StatusNotFound)
		return
	}
	if s.ctx.Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if !rn.begin() {
		http.Error(w, fmt.Sprintf("schedule %q is running", name), http.StatusConflict)
		return
	}
	id := worker.NewID()[:16]
	done := make(chan runResult, 1)
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		defer rn.end()
		done <- rn.drain(s.ctx, id, worker.Slot{Planned: time.Now()})
	}()
	s.logger.Info("run requested over HTTP", "schedule", name, "run_id", id, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Query().Get("wait") != "true" {
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]string{"schedule": name, "run_id": id, "status": "started"})
		return
	}
	json.NewEncoder(w).Encode(<-done)
}

// listen starts the HTTP server on addr and returns the address it
// listens on and a stop that shuts it down gracefully, then waits for
// the runs it started.
func (s *server) listen(addr string) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("http.addr %s: %w", addr, err)
	}
	hs := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http", "err", err)
		}
	}()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(s.shutdown, 10*time.Second))
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			// Requests still open (a ?wait=true on a long run): cut them.
			s.logger.Warn("http: shutdown", "err", err)
			hs.Close()
		}
		s.runs.Wait()
	}, nil
}

// bearerToken returns the sha256 of the token in h, read from its file
// when it names one, or nil when neither is set.
func bearerToken(h config.HTTP) ([]byte, error) {
	tok := h.Token
	if h.TokenFile != "" {
		b, err := os.ReadFile(h.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("http.token_file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
		if len(tok) < config.HTTPTokenMinLength {
			return nil, fmt.Errorf("http.token_file %s: the token is shorter than %d characters", h.TokenFile, config.HTTPTokenMinLength)
		}
	}
	if tok == "" {
		return nil, nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return sum[:], nil
}

// result is a runResult for the run id of schedule that ended with sum
// and cause.
func result(schedule, id string, sum worker.Summary, err, cause error) runResult {
	res := runResult{Schedule: schedule, RunID: id, Outcome: metrics.RunOutcome(sum, err), Summary: summaryFields(sum),
		whole: err == nil && cause == nil && !sum.Halted && sum.Retrying == 0}
	if cause != nil {
		res.Outcome = metrics.RunFailed
		res.Error = secret.Redact(cause.Error())
	}
	return res
}
