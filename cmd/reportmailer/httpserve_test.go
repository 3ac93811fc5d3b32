package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
)

// testServer is a server whose one schedule, "daily", blocks each run
// until release is closed.
func testServer(t *testing.T, token string) (*server, *runner, chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	rn := &runner{name: "daily", budget: time.Minute, progress: &progress{}, drain: func(_ context.Context, id string, _ worker.Slot) runResult {
		<-release
		return runResult{Schedule: "daily", RunID: id, Outcome: "ok"}
	}}
	var tok []byte
	if token != "" {
		var err error
		if tok, err = bearerToken(config.HTTP{Token: token}); err != nil {
			t.Fatal(err)
		}
	}
	sv := &server{logger: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: http.NotFoundHandler(),
		runners: map[string]*runner{"daily": rn}, token: tok, ready: func(context.Context) error { return nil }, ctx: context.Background()}
	sv.tick()
	return sv, rn, release
}

func TestRunEndpoint(t *testing.T) {
	const token = "0123456789abcdef-token"
	sv, rn, release := testServer(t, token)
	h := sv.handler()
	post := func(path, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	tests := []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/run/daily", "", http.StatusUnauthorized},
		{"not a bearer token", "/run/daily", "Basic " + token, http.StatusUnauthorized},
		{"wrong token", "/run/daily", "Bearer " + token + "x", http.StatusForbidden},
		{"a prefix of the token", "/run/daily", "Bearer " + token[:8], http.StatusForbidden},
		{"unknown schedule", "/run/weekly", "Bearer " + token, http.StatusNotFound},
		{"started", "/run/daily", "Bearer " + token, http.StatusAccepted},
		{"while running", "/run/daily", "Bearer " + token, http.StatusConflict},
		// The scheme is case-insensitive: accepted, so 409, not 401.
		{"lower-case scheme", "/run/daily", "bearer " + token, http.StatusConflict},
		{"upper-case scheme", "/run/daily", "BEARER " + token, http.StatusConflict},
	}
	for _, tt := range tests {
		rec := post(tt.path, tt.auth)
		if rec.Code != tt.want {
			t.Errorf("%s: POST %s = %d %q, want %d", tt.name, tt.path, rec.Code, rec.Body.String(), tt.want)
		}
		if strings.Contains(rec.Body.String(), token) {
			t.Errorf("%s: the answer shows the token", tt.name)
		}
		if rec.Code == http.StatusAccepted && !strings.Contains(rec.Body.String(), `"run_id":"`) {
			t.Errorf("%s: the answer %q does not give the run's id", tt.name, rec.Body.String())
		}
	}
	if rn.begin() {
		t.Error("cron could start a run while POST /run's was running")
	}
	close(release)
	sv.runs.Wait()
	if rec := post("/run/daily?wait=true", "Bearer "+token); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"outcome":"ok"`) {
		t.Errorf("POST ?wait=true = %d %q, want 200 and the result", rec.Code, rec.Body.String())
	}
}

func TestRunEndpointOffWithoutToken(t *testing.T) {
	sv, _, _ := testServer(t, "")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/run/daily", nil)
	req.Header.Set("Authorization", "Bearer anything-at-all-here")
	sv.handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("POST /run with no token configured = %d, want 403", rec.Code)
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(sv *server, rn *runner)
		want    int
		problem string
	}{
		{"alive and idle", func(*server, *runner) {}, http.StatusOK, ""},
		{"scheduler stopped ticking", func(sv *server, _ *runner) { sv.lastTick = time.Now().Add(-time.Hour) }, http.StatusServiceUnavailable, "scheduler: last tick"},
		{"run within its budget", func(_ *server, rn *runner) { rn.running, rn.started = true, time.Now() }, http.StatusOK, ""},
		{"run stuck past budget and margin", func(_ *server, rn *runner) {
			rn.running, rn.started = true, time.Now().Add(-rn.budget-stuckMargin-time.Minute)
		}, http.StatusServiceUnavailable, "schedule daily: run has made no progress for"},
		{"long run whose stages keep ending", func(_ *server, rn *runner) {
			rn.running, rn.started = true, time.Now().Add(-10*(rn.budget+stuckMargin))
			_, end := rn.progress.Stage(context.Background(), worker.StageSend)
			end(nil)
		}, http.StatusOK, ""},
		{"long run whose last stage ended long ago", func(_ *server, rn *runner) {
			rn.running, rn.started = true, time.Now().Add(-10*(rn.budget+stuckMargin))
			rn.progress.last.Store(time.Now().Add(-rn.budget - stuckMargin - time.Minute).UnixNano())
		}, http.StatusServiceUnavailable, "schedule daily: run has made no progress for"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sv, rn, _ := testServer(t, "")
			tt.setup(sv, rn)
			rec := httptest.NewRecorder()
			sv.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != tt.want || !strings.Contains(rec.Body.String(), tt.problem) {
				t.Errorf("/healthz = %d %q, want %d with %q", rec.Code, rec.Body.String(), tt.want, tt.problem)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	sv, _, _ := testServer(t, "")
	sv.ready = func(context.Context) error { return errors.New("SQS: last call ReceiveMessage: connection refused") }
	rec := httptest.NewRecorder()
	sv.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "SQS") {
		t.Errorf("/readyz = %d %q, want 503 naming SQS", rec.Code, rec.Body.String())
	}
}

// TestFailing: what counts as a failed call for /readyz: no answer, a
// 5xx, and a refusal of the credentials or the signature, whatever its
// status; any other answer comes from a service that takes the calls.
func TestFailing(t *testing.T) {
	answer := func(status int, code string) error {
		var err error = &smithy.GenericAPIError{Code: code, Message: "m"}
		return &smithy.OperationError{ServiceID: "SQS", OperationName: "ReceiveMessage", Err: &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}}}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no error", nil, false},
		{"cancelled", context.Canceled, false},
		{"no answer", errors.New("dial tcp: connection refused"), true},
		{"503", answer(503, "ServiceUnavailable"), true},
		{"500", answer(500, "InternalFailure"), true},
		{"404", answer(404, "NotFound"), false},
		{"throttled", answer(400, "ThrottlingException"), false},
		{"a bad request", answer(400, "InvalidParameterValue"), false},
		{"401", answer(401, "Unauthorized"), true},
		{"403", answer(403, "Forbidden"), true},
		{"AccessDenied", answer(403, "AccessDenied"), true},
		{"AccessDeniedException as a 400", answer(400, "AccessDeniedException"), true},
		{"ExpiredToken as a 400", answer(400, "ExpiredToken"), true},
		{"InvalidClientTokenId", answer(403, "InvalidClientTokenId"), true},
		{"SignatureDoesNotMatch", answer(403, "SignatureDoesNotMatch"), true},
		{"UnrecognizedClientException as a 400", answer(400, "UnrecognizedClientException"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failing(tt.err); got != tt.want {
				t.Errorf("failing(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestReadyFailureExpires: a service with no check fails /readyz for
// readyFailureTTL after its failed call, not until it is called again.
func TestReadyFailureExpires(t *testing.T) {
	now := time.Now()
	denied := errors.New("AccessDeniedException")
	failed := map[string]awsCall{
		"KMS":        {at: now.Add(-readyFailureTTL - time.Second), operation: "Sign", err: denied},
		"CloudFront": {at: now.Add(-time.Minute), operation: "DescribeKeyValueStore", err: denied},
	}
	err := checkFailed(context.Background(), now, failed, nil)
	if err == nil || strings.Contains(err.Error(), "KMS") || !strings.Contains(err.Error(), "CloudFront: last call DescribeKeyValueStore") {
		t.Errorf("checkFailed = %v, want CloudFront only: KMS's failure is past %s", err, readyFailureTTL)
	}
	// A service with a check is checked however old its failure.
	err = checkFailed(context.Background(), now, map[string]awsCall{"KMS": failed["KMS"]},
		map[string]func(context.Context) error{"KMS": func(context.Context) error { return denied }})
	if err == nil || !strings.Contains(err.Error(), "KMS") {
		t.Errorf("checkFailed = %v, want KMS, whose check fails", err)
	}
}

// TestReadyChecksKMS: /readyz checks KMS, on the active key when it is
// in KMS, only when a configured key is.
func TestReadyChecksKMS(t *testing.T) {
	tests := []struct {
		name string
		cf   *config.CloudFront
		want string
	}{
		{"no CloudFront", nil, ""},
		{"a key file", &config.CloudFront{KeyID: "K1", PrivateKeyFile: "k.pem"}, ""},
		{"the shorthand key in KMS", &config.CloudFront{KeyID: "K1", KMSKeyID: "alias/cf"}, "alias/cf"},
		{"the active key in KMS", &config.CloudFront{Keys: []config.CloudFrontKey{
			{ID: "K1", KMSKeyID: "alias/old"}, {ID: "K2", KMSKeyID: "alias/new", Active: true}}}, "alias/new"},
		{"a retired key in KMS", &config.CloudFront{Keys: []config.CloudFrontKey{
			{ID: "K1", KMSKeyID: "alias/old"}, {ID: "K2", PrivateKeyFile: "k.pem", Active: true}}}, "alias/old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kmsCheckKey(tt.cf); got != tt.want {
				t.Errorf("kmsCheckKey = %q, want %q", got, tt.want)
			}
			a := &app{cfg: &config.Config{Links: config.Links{CloudFront: tt.cf}}}
			if _, ok := a.readyChecks()["KMS"]; ok != (tt.want != "") {
				t.Errorf("readyChecks has a KMS check: %v, want %v", ok, tt.want != "")
			}
		})
	}
}

// TestRunResultRedacted: key material in a run's cause never reaches
// POST /run?wait=true's answer or drain's JSON summary line.
func TestRunResultRedacted(t *testing.T) {
	const key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
	cause := errors.New("links: parse key: " + key)
	for name, out := range map[string]string{
		"?wait=true":   result("daily", "r1", worker.Summary{}, nil, cause).Error,
		"JSON summary": summaryJSON("daily", "r1", worker.Summary{}, settleRun{}, cause),
	} {
		if strings.Contains(out, "MIIEvQ") || !strings.Contains(out, "parse key") {
			t.Errorf("%s: %q, want the cause with the key redacted", name, out)
		}
	}
}

// TestReadyChecksAtOnce: /readyz checks the failed services at the same
// time, each within its own timeout: one after another, three slow
// checks would outlast the probe's timeout. Each check here answers
// only once all three are running.
func TestReadyChecksAtOnce(t *testing.T) {
	var mu sync.Mutex
	started := 0
	all := make(chan struct{})
	check := func(ctx context.Context) error {
		mu.Lock()
		if started++; started == 3 {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	down := awsCall{at: time.Now(), operation: "Op", err: errors.New("connection refused")}
	failed := map[string]awsCall{"SQS": down, "S3": down, "SESv2": down, "Other": down}
	err := checkFailed(context.Background(), time.Now(), failed, map[string]func(context.Context) error{"SQS": check, "S3": check, "SESv2": check})
	if err == nil || strings.Contains(err.Error(), "SQS") || !strings.Contains(err.Error(), "Other: last call Op") {
		t.Errorf("checkFailed = %v, want only Other, which has no check", err)
	}
}

// TestStopCutsWaitingRequests: a ?wait=true request on a run that
// outlasts the shutdown's grace is cut, rather than holding stop.
func TestStopCutsWaitingRequests(t *testing.T) {
	const token = "0123456789abcdef-token"
	sv, _, release := testServer(t, token)
	sv.shutdown = time.Millisecond
	addr, stop, err := sv.listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/run/daily?wait=true", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	answered := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	// Stop once the run has started (the request is in the handler).
	for !func() bool {
		sv.runners["daily"].mu.Lock()
		defer sv.runners["daily"].mu.Unlock()
		return sv.runners["daily"].running
	}() {
		runtime.Gosched()
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	if err := <-answered; err == nil {
		t.Error("the waiting request got an answer; want its connection cut")
	}
	close(release) // the run ends; stop waits for it
	<-stopped
}
