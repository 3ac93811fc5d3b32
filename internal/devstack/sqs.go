package devstack

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/models"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/sirupsen/logrus"
)

// sqsTickInterval is how often goaws returns messages whose visibility
// timeout expired and moves the over-received ones to their dead-letter
// queue. Its own binary uses 1 s; shorter keeps redelivery tests quick.
const sqsTickInterval = 100 * time.Millisecond

// goaws writes queue URLs as "http://" + Region + "." + Host + ":" + Port +
// "/" + AccountID + "/" + name, from one process-wide environment. No real
// host fits there with a region set ("us-east-1.127.0.0.1" does not
// resolve), and one global port cannot serve several stacks. So goaws is
// given a placeholder host that cannot collide with anything real, and each
// stack's handler rewrites the placeholder prefix in its responses to its
// own http://127.0.0.1:port. ARNs keep the region.
const (
	goawsHost = "goaws.devstack.invalid"
	goawsPort = "4100"
)

var goawsURLPrefix = []byte("http://" + Region + "." + goawsHost + ":" + goawsPort)

// goawsOnce configures goaws's package-level state the first time a stack
// starts, instead of letting its YAML loader search the working directory.
// It is written once, before any goaws handler runs, and never again, so
// concurrent stacks do not race on it.
var goawsOnce sync.Once

func configureGoaws() {
	goawsOnce.Do(func() {
		models.CurrentEnvironment = models.Environment{
			Host:      goawsHost,
			Port:      goawsPort,
			Region:    Region,
			AccountID: AccountID,
			// The defaults goaws's config loader fills in; CreateQueue
			// reads them, and a zero VisibilityTimeout would make every
			// received message visible again at once.
			QueueAttributeDefaults: models.EnvQueueAttributes{
				VisibilityTimeout:      30,
				MaximumMessageSize:     262144, // 256 KiB
				MessageRetentionPeriod: 345600, // 4 days
			},
		}
		models.LogMessages = false

		// goaws logs every queue it creates at Info through the global
		// logrus logger. Keep warnings and errors, and send them to the
		// running stacks' slog loggers instead of stderr.
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.WarnLevel)
		logrus.AddHook(goawsLogs)
	})
}

// goawsLogs forwards goaws's logrus entries to the loggers of the stacks
// that are running. goaws's log lines are process-wide, so with several
// stacks running each of them sees all of the lines.
var goawsLogs = &logHook{loggers: map[*slog.Logger]struct{}{}}

type logHook struct {
	mu      sync.Mutex
	loggers map[*slog.Logger]struct{}
}

func (h *logHook) add(l *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loggers[l] = struct{}{}
}

func (h *logHook) remove(l *slog.Logger) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.loggers, l)
}

func (h *logHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h *logHook) Fire(e *logrus.Entry) error {
	level := slog.LevelWarn
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case strings.HasPrefix(e.Message, "No messages in Queue"):
		// goaws warns on every empty receive; a polling worker makes
		// that the normal case.
		level = slog.LevelDebug
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.loggers {
		l.Log(context.Background(), level, "goaws: "+e.Message)
	}
	return nil
}

// sqsServer is goaws's router behind one stack's listener, plus the
// periodic task that expires visibility timeouts.
type sqsServer struct {
	router  http.Handler
	url     []byte // this stack's SQS base URL
	logger  *slog.Logger
	quit    chan bool
	ticking sync.WaitGroup
}

func newSQSServer(baseURL string, logger *slog.Logger) *sqsServer {
	configureGoaws()
	goawsLogs.add(logger)
	s := &sqsServer{
		router: router.New(),
		url:    []byte(baseURL),
		logger: logger,
		quit:   make(chan bool),
	}
	// Every stack runs its own ticker over the shared queues. Two tickers
	// do no harm: a message whose timeout expired is made visible by
	// whichever ticks first, and the other then skips it.
	s.ticking.Go(func() { gosqs.PeriodicTasks(sqsTickInterval, s.quit) })
	return s
}

// ServeHTTP runs goaws on a buffered response and rewrites the placeholder
// queue URL prefix to this stack's address.
func (s *sqsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bw := &bufferedWriter{header: w.Header()}
	s.router.ServeHTTP(bw, r)
	body := bytes.ReplaceAll(bw.body.Bytes(), goawsURLPrefix, s.url)
	w.Header().Del("Content-Length")
	w.WriteHeader(statusOrOK(bw.status))
	_, _ = w.Write(body)
}

func (s *sqsServer) stop() {
	close(s.quit)
	s.ticking.Wait()
	goawsLogs.remove(s.logger)
}

func statusOrOK(code int) int {
	if code == 0 {
		return http.StatusOK
	}
	return code
}

// bufferedWriter holds a whole response so that it can be edited before it
// is sent. goaws's responses are small; long polls write nothing until
// they end.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
