// Package browser renders email HTML in headless Chromium, for
// screenshots and for tests that check the layout as a reader's client
// would show it.
//
// It runs the Chromium that Debian's chromium package installs
// (/usr/bin/chromium), headless, with a new empty profile, and with the
// background services that would reach for the network turned off. The
// pages it loads are local files; emails need nothing from outside.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// DefaultPath is where Debian's chromium package puts the browser.
const DefaultPath = "/usr/bin/chromium"

// ErrNoChromium means the browser is not installed.
var ErrNoChromium = errors.New("chromium is not installed")

// Browser is one running headless Chromium. Close it when done.
type Browser struct {
	dir         string // profile and page files, removed by Close
	allocCancel context.CancelFunc
	ctx         context.Context // the browser's first tab
	cancel      context.CancelFunc
	pages       int
}

// Start starts Chromium from path ("" means DefaultPath). It returns an
// error wrapping ErrNoChromium when there is no file at path.
func Start(ctx context.Context, path string) (*Browser, error) {
	if path == "" {
		path = DefaultPath
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s (on Debian: apt-get install chromium)", ErrNoChromium, path)
	}
	dir, err := os.MkdirTemp("", "reportmailer-chromium-")
	if err != nil {
		return nil, err
	}
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // needed as root, as in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		// Nothing may reach for the network: this machine's, and many
		// CI machines', is closed.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("no-proxy-server", true),
		// Overlay scrollbars take no width, so a page's layout width is
		// exactly the viewport's.
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
	)
	bctx, bcancel := chromedp.NewContext(actx)
	b := &Browser{dir: dir, allocCancel: acancel, ctx: bctx, cancel: bcancel}
	// Start the browser now, so a browser that cannot start fails here.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		b.Close()
		return nil, fmt.Errorf("start chromium %s: %w", path, err)
	}
	return b, nil
}

// Close stops the browser and removes its profile.
func (b *Browser) Close() error {
	b.cancel()
	b.allocCancel()
	return os.RemoveAll(b.dir)
}

// Viewport is the window a page is laid out in.
type Viewport struct {
	Width  int  // CSS pixels
	Height int  // CSS pixels; 0 means 800
	Mobile bool // lay out as a phone does: honours <meta name=viewport>
	Dark   bool // prefers-color-scheme: dark
}

// Page is one email loaded in its own tab.
type Page struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Open loads html as a local file in a new tab laid out in v.
func (b *Browser) Open(html string, v Viewport) (*Page, error) {
	b.pages++
	file := filepath.Join(b.dir, fmt.Sprintf("page-%d.html", b.pages))
	if err := os.WriteFile(file, []byte(html), 0o600); err != nil {
		return nil, err
	}
	return b.OpenFile(file, v)
}

// OpenFile loads the HTML file at path in a new tab laid out in v.
func (b *Browser) OpenFile(path string, v Viewport) (*Page, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{ctx: ctx, cancel: cancel}
	height := v.Height
	if height == 0 {
		height = 800
	}
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if v.Mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	scheme := "light"
	if v.Dark {
		scheme = "dark"
	}
	err = chromedp.Do(ctx,
		chromedp.EmulateViewport(int64(v.Width), int64(height), opts...),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return err
		}),
		chromedp.Navigate("file://"+filepath.ToSlash(abs)),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return p, nil
}

// Close closes the tab.
func (p *Page) Close() { p.cancel() }

// Screenshot returns a PNG of the whole page, however long.
func (p *Page) Screenshot() ([]byte, error) {
	return chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
}

// Eval runs the JavaScript expression js in the page and decodes its
// JSON result into out.
func (p *Page) Eval(js string, out any) error {
	raw, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]byte](js))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}
