// Package uitest drives the web UI in headless Chromium for tests: a tab
// that records every script error of the pages, and screenshots.
package uitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// FindChromium returns the path of a Chromium or Chrome binary, or "".
func FindChromium() string {
	if p := os.Getenv("SLUICE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser is a headless Chromium tab that records the pages' errors.
type Browser struct {
	Ctx   context.Context
	Shots string // the screenshots' directory
	mu    sync.Mutex
	errs  []string
}

// NewBrowser starts headless Chromium for the test, or skips the test
// with a notice when there is none. Screenshots go to $SLUICE_UI_SHOTS, or
// a new temp dir; their paths are logged.
func NewBrowser(t *testing.T) *Browser {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Chromium; skipped with -short")
	}
	chromium := FindChromium()
	if chromium == "" {
		t.Skip("NOTICE: browser test skipped: no chromium on PATH (install Debian's chromium: apt-get install -y chromium; .ci/run does)")
	}
	b := &Browser{Shots: os.Getenv("SLUICE_UI_SHOTS")}
	if b.Shots == "" {
		var err error
		if b.Shots, err = os.MkdirTemp("", "sluice-ui-shots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(b.Shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	b.Ctx = ctx
	// Every console error, uncaught exception and browser log error of the
	// pages (a failed script, a refused resource) is kept for CheckErrors.
	if err := chromedp.Do(ctx); err != nil { // starts the browser and the tab
		t.Fatalf("start %s: %v", chromium, err)
	}
	consoleCtx, stopConsole := context.WithCancel(ctx)
	consoleDone := make(chan struct{})
	messages := chromedp.Console(consoleCtx)
	go func() { // ends when stopConsole cancels the subscription
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errs = append(b.errs, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		stopConsole()
		<-consoleDone
		cancel()
		cancelCtx()
		cancelAlloc()
	})
	return b
}

// Shot saves a screenshot of the whole page.
func (b *Browser) Shot(t *testing.T, name string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		buf, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return chromedp.Void{}, err
		}
		p := filepath.Join(b.Shots, name)
		t.Logf("screenshot: %s", p)
		return chromedp.Void{}, os.WriteFile(p, buf, 0o644)
	}
}

// CheckErrors fails the test if a page reported a script error.
func (b *Browser) CheckErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Fatalf("page script errors:\n%s", strings.Join(b.errs, "\n"))
	}
}

// CSS selects by a CSS selector.
func CSS(s string) chromedp.CSS { return chromedp.CSS(s) }

// Click clicks the first element selector matches, in the page's own
// script, waiting up to 30 s for one. A live page redraws its tables and
// pager: chromedp's Click finds a node and then clicks it by id, which
// fails ("Could not find node with given id") when a redraw comes between.
func Click(selector string) chromedp.Action[chromedp.Void] {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true })()`, selector)
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, err := chromedp.Evaluate[bool](js)(ctx, tg)
			if err != nil || ok {
				return chromedp.Void{}, err
			}
			if time.Now().After(deadline) {
				return chromedp.Void{}, fmt.Errorf("click %s: no such element after 30s", selector)
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}
