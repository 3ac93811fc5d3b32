// Package devstack runs a local AWS-compatible stack in one Go process, for
// the demo and the tests.
//
// A Stack serves three endpoints, each on its own 127.0.0.1 port chosen by
// the kernel:
//
//   - SQS (JSON protocol): goaws v0.5.4, in-process.
//   - S3 (path-style): gofakes3 with an in-memory backend.
//   - SES v2 (REST-JSON): a small endpoint in this package that accepts
//     SendEmail and GetAccount and records what it was asked to send.
//
// Point aws-sdk-go-v2 clients at them with static credentials, region
// [Region], BaseEndpoint set to the URL fields and, for S3, UsePathStyle.
// No endpoint checks signatures.
//
// goaws keeps its queues in package-level variables, so every Stack in a
// process shares one set of queues: a queue created through one Stack is
// visible through any other, and outlives the Stack that created it. Tests
// that run stacks side by side should give their queues unique names. The
// S3 and SES state belongs to each Stack.
//
// devstack is test and demo infrastructure; the production binary must not
// import it.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// Region is the AWS region the stack reports in ARNs and expects clients to
// sign for (signatures are not checked).
const Region = "us-east-1"

// AccountID is the AWS account id in the queue URLs and ARNs the stack
// returns.
const AccountID = "000000000000"

// shutdownGrace is how long Close lets in-flight requests finish before it
// closes their connections. Long polls notice the closed connection and end
// early, so a worker still polling does not hold Close up for 20 s.
const shutdownGrace = time.Second

// Stack is a running local stack. Its URL fields are base URLs of the form
// http://127.0.0.1:port with no trailing slash. Close it when done.
type Stack struct {
	SQSURL string // SQS endpoint (goaws); queue URLs it returns start with it
	S3URL  string // S3 endpoint (gofakes3), path-style
	SESURL string // SES v2 endpoint; GET SESURL+"/store" reads back Sent

	logger    *slog.Logger
	servers   []*http.Server
	serving   sync.WaitGroup // Serve goroutines
	sqs       *sqsServer
	s3        gofakes3.Backend
	ses       *sesServer
	closeOnce sync.Once
	closeErr  error
}

// Start starts a stack whose servers listen on free 127.0.0.1 ports. The
// servers run until Close; ctx only bounds start-up. A nil logger discards
// logs. Start may be called more than once per process; see the package
// documentation for what the stacks then share.
func Start(ctx context.Context, logger *slog.Logger) (*Stack, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Stack{logger: logger}

	var lc net.ListenConfig
	listen := func(name string) (net.Listener, string, error) {
		ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", fmt.Errorf("listen %s: %w", name, err)
		}
		return ln, "http://" + ln.Addr().String(), nil
	}

	sqsLn, sqsURL, err := listen("sqs")
	if err != nil {
		return nil, err
	}
	s3Ln, s3URL, err := listen("s3")
	if err != nil {
		sqsLn.Close()
		return nil, err
	}
	sesLn, sesURL, err := listen("ses")
	if err != nil {
		sqsLn.Close()
		s3Ln.Close()
		return nil, err
	}
	s.SQSURL, s.S3URL, s.SESURL = sqsURL, s3URL, sesURL

	s.sqs = newSQSServer(sqsURL, logger.With("service", "sqs"))
	var s3Handler http.Handler
	s.s3, s3Handler = newS3(logger.With("service", "s3"))
	s.ses = newSESServer(logger.With("service", "ses"))

	s.serve("sqs", sqsLn, s.sqs)
	s.serve("s3", s3Ln, s3Handler)
	s.serve("ses", sesLn, s.ses)

	logger.Info("devstack started", "sqs", s.SQSURL, "s3", s.S3URL, "ses", s.SESURL)
	return s, nil
}

func (s *Stack) serve(name string, ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.With("service", name).Handler(), slog.LevelWarn),
	}
	s.servers = append(s.servers, srv)
	s.serving.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("devstack serve", "service", name, "err", err)
		}
	})
}

// Close stops the servers, giving in-flight requests up to a second to
// finish before closing their connections, and returns once every listener
// is closed and every server goroutine it started has returned. Queues stay
// in goaws's process-wide state. Calling Close again returns the first
// result.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		var errs []error
		for _, srv := range s.servers {
			if err := srv.Shutdown(ctx); err != nil {
				// Whatever is still running gets its connection closed.
				if err := srv.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close server: %w", err))
				}
			}
		}
		s.serving.Wait()
		s.sqs.stop()
		s.closeErr = errors.Join(errs...)
		s.logger.Info("devstack stopped")
	})
	return s.closeErr
}

// SetSendQuota changes the quota the SES endpoint reports from
// GetAccount (by default 14 recipients/s and 50,000 a day), for example
// so that a load run measures the worker rather than its pacing. The
// endpoint reports the quota; it does not enforce it.
func (s *Stack) SetSendQuota(maxSendRate, max24HourSend float64) {
	s.ses.mu.Lock()
	defer s.ses.mu.Unlock()
	s.ses.maxSendRate, s.ses.max24h = maxSendRate, max24HourSend
}

// KeepBodies sets whether the SES endpoint keeps the bodies (HTML,
// text, raw MIME) of the emails it accepts; it does by default. A load
// run of tens of thousands of emails turns it off, so that the stack's
// own memory does not grow by their size.
func (s *Stack) KeepBodies(keep bool) {
	s.ses.mu.Lock()
	defer s.ses.mu.Unlock()
	s.ses.lean = !keep
}

// ForgetSent drops the emails the SES endpoint has accepted so far.
func (s *Stack) ForgetSent() {
	s.ses.mu.Lock()
	defer s.ses.mu.Unlock()
	s.ses.emails = nil
}

// Sent returns a copy of the emails the SES endpoint accepted, oldest
// first.
func (s *Stack) Sent() []SentEmail {
	return s.ses.sent(time.Time{})
}

// S3Backend returns the in-memory store behind the S3 endpoint, so that
// in-process code (a local CloudFront-style edge, say) can read objects
// without going through HTTP.
func (s *Stack) S3Backend() gofakes3.Backend {
	return s.s3
}
