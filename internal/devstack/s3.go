package devstack

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// newS3 returns an in-memory S3 backend and a path-style handler for it.
func newS3(logger *slog.Logger) (gofakes3.Backend, http.Handler) {
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(s3Logger{logger}))
	return backend, faker.Server()
}

// s3Logger adapts gofakes3's logger to slog. gofakes3 reports every request
// at INFO, so that goes to Debug.
type s3Logger struct{ l *slog.Logger }

func (s s3Logger) Print(level gofakes3.LogLevel, v ...any) {
	msg := "gofakes3: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n")
	switch level {
	case gofakes3.LogErr:
		s.l.Error(msg)
	case gofakes3.LogWarn:
		s.l.Warn(msg)
	default:
		s.l.Debug(msg)
	}
}
