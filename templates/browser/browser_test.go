package browser_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/templates/browser"
)

func TestStartWithoutChromium(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "chromium")
	_, err := browser.Start(context.Background(), missing)
	if !errors.Is(err, browser.ErrNoChromium) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "apt-get install chromium") {
		t.Errorf("Start(%q) error = %v, want ErrNoChromium naming the path and how to install it", missing, err)
	}
}
