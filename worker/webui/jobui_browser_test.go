package webui

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// chromium is $CHROMIUM, else chromium or chromium-browser on PATH.
func chromium() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	if p, err := exec.LookPath("chromium-browser"); err == nil {
		return p, nil
	}
	return exec.LookPath("chromium")
}

// controls are the job UI's controls a user sees on the dead jobs page.
type controls struct {
	Buttons, CheckBoxes int
	Banner              string // the page's read-only notice ("none" without)
}

// In Chromium, the job UI's dead jobs page, drawn by its own script, shows
// an operator the retry and delete buttons and the check boxes, and a
// viewer none of them, with a read-only notice.
func TestJobUIInTheBrowserHidesChangesFromViewers(t *testing.T) {
	t.Parallel()
	exe, err := chromium()
	testenv.RequireServer(t, "no chromium", err)
	b := testkit.NewBackend(t)
	base := startJobUI(t, b)
	killJob(t, b, "job_browser", "evt_browser")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()), chromedp.NoSandbox, chromedp.DisableGPU)...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium %s: %v", exe, err)
	}
	op := deadJobsPage(t, browser, base, "ana@example.com", "sre")
	if op.Buttons != 4 || op.CheckBoxes != 2 || op.Banner != "none" {
		t.Errorf("operator sees %+v, want the 4 buttons, 2 check boxes, no notice", op)
	}
	vi := deadJobsPage(t, browser, base, "bo@example.com", "support")
	if vi.Buttons != 0 || vi.CheckBoxes != 0 || vi.Banner == "none" {
		t.Errorf("viewer sees %+v, want no button, no check box, a read-only notice", vi)
	}
}

// deadJobsPage opens the job UI's dead jobs page in a new tab of browser
// as email of group (the proxy's headers), waits for the dead job to be
// listed, and counts what is visible.
func deadJobsPage(t *testing.T, browser context.Context, base, email, group string) controls {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	defer cancel()
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"X-Forwarded-Email": email, "X-Forwarded-Groups": group}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/#/dead_jobs")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](`document.body.innerText.includes("evt_browser")`,
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("%s: the dead job is not listed: %v", email, err)
	}
	c, err := chromedp.Run(tab, chromedp.Evaluate[controls](`(() => {
		const visible = sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null).length;
		return {Buttons: visible("button"), CheckBoxes: visible("input[type=checkbox]"),
			Banner: getComputedStyle(document.body, "::before").content};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
