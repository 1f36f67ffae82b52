package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// browserStepTimeout bounds one step in the browser (a page load, a read),
// within the test's own deadline.
const browserStepTimeout = 20 * time.Second

// chromiumPath finds the browser: $CHROMIUM when set, else chromium or
// chromium-browser on PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p, nil
	}
	if p, err2 := exec.LookPath("chromium-browser"); err2 == nil {
		return p, nil
	}
	return "", fmt.Errorf("neither chromium nor chromium-browser is on PATH (set CHROMIUM to the binary): %w", err)
}

// browserOutputDir is where the screenshots go: $TEST_OUTPUT_DIR, else a new
// folder in the temporary directory. It is kept after the test.
func browserOutputDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_OUTPUT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "stripe-webhooks-browser-"+time.Now().UTC().Format("20060102-150405.000000"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserConsole collects what the browser reports as an error: calls of
// console.error and console.assert, uncaught exceptions, and error entries
// of the browser log, where a Content-Security-Policy violation and a failed
// load are reported. Its listen runs in the tab's event loop, so an error
// the browser reported before the reply to a command is collected by the
// time that command returns.
type browserConsole struct {
	mu     sync.Mutex
	errors []string
	added  chan struct{} // closed and replaced at each error
}

func newBrowserConsole() *browserConsole {
	return &browserConsole{added: make(chan struct{})}
}

func (c *browserConsole) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		args := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			args = append(args, remoteObjectText(a))
		}
		c.add(fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		c.add(fmt.Sprintf("uncaught exception at %s:%d: %s", d.URL, d.LineNumber+1, text))
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			c.add(fmt.Sprintf("%s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func (c *browserConsole) add(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors = append(c.errors, msg)
	close(c.added)
	c.added = make(chan struct{})
}

// take returns the errors collected since the last take.
func (c *browserConsole) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.errors
	c.errors = nil
	return out
}

// await removes and returns the first error containing substr, waiting for
// it until ctx ends.
func (c *browserConsole) await(ctx context.Context, substr string) (string, error) {
	for {
		c.mu.Lock()
		for i, m := range c.errors {
			if strings.Contains(m, substr) {
				c.errors = append(c.errors[:i], c.errors[i+1:]...)
				c.mu.Unlock()
				return m, nil
			}
		}
		added := c.added
		c.mu.Unlock()
		select {
		case <-added:
		case <-ctx.Done():
			return "", fmt.Errorf("no browser console error containing %q: %w", substr, ctx.Err())
		}
	}
}

func remoteObjectText(o *runtime.RemoteObject) string {
	if len(o.Value) == 0 {
		return o.Description
	}
	s := string(o.Value)
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// browserRun runs one action in the tab, bounded by browserStepTimeout.
func browserRun[T any](t *testing.T, tab context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// browserLoad runs steps that load a page (a navigation, a click on a link
// or a form's button), waits for the page's load, and checks the HTTP status
// of its document.
func browserLoad(t *testing.T, tab context.Context, what string, wantStatus int64, steps ...chromedp.Action[chromedp.Void]) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserStepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	if resp == nil || resp.Status != wantStatus {
		t.Fatalf("browser: %s: response %+v, want status %d", what, resp, wantStatus)
	}
	return resp
}

// definition selects the <dd> of the <dt> labelled label on a console page.
func definition(label string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//dt[normalize-space()=%q]/following-sibling::dd[1]`, label))
}

// An operator's round in a real browser: the login is refused without
// credentials, then given at the browser's login prompt; the overview
// counts the failing event; the events list is filtered to it through its
// form; its page replays it and then shows it processed. Every page is
// screenshotted, and anything the browser reports as an error (a script
// error, a failed load, a violation of the console's strict
// Content-Security-Policy) fails the test.
func TestConsoleBrowser(t *testing.T) {
	t.Parallel()
	exe, err := chromiumPath()
	testenv.RequireServer(t, "no chromium", err)
	began := time.Now()
	defer func() { t.Logf("browser test ran %s", time.Since(began).Round(time.Millisecond)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	b := testkit.NewBackend(t)
	ui := startWebUI(t, b, map[string]string{"WEBUI_USERNAME": "ops", "WEBUI_PASSWORD": "s3cret"})
	failingID, pool := seedBrowserEvents(t, b)
	br := startBrowser(t, ctx, exe, ui.base)
	defer br.close()

	br.loginRefused()
	br.overview()
	br.filterFailing(failingID)
	br.eventPage(failingID)
	br.replay(failingID)
	checkReplayedOnce(t, b, ui, pool, failingID)
	br.checkConsole("end")
}

// browserFailingAccount is the account of the event the browser replays.
const browserFailingAccount = "acct_browser_failing"

// seedBrowserEvents stores the failing event (an hour ago, its last attempt
// failed, its retry due later) before a pool starts, so that no sweep can
// queue it while it is set up: only the replay applies it. Then a worker
// pool starts beside the console, as in production, and applies two events
// delivered meanwhile. It returns the failing event's id and the pool.
func seedBrowserEvents(t *testing.T, b *testkit.Backend) (string, *service) {
	t.Helper()
	failing := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: browserFailingAccount,
		Mutate: testkit.Set("charges_enabled", true, "business_profile", map[string]any{"name": "Browser Replay Ltd"})})
	failingID := testkit.EventID(failing)
	b.StoreOnly(t, failing)
	if err := b.Store.DB().Exec(`UPDATE webhook_events SET error = 'handler failed: stripe account lock timeout',
		retry_count = 3, next_attempt_at = now() + interval '1 hour' WHERE stripe_event_id = ?`, failingID).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	pool := startWorker(t, b, nil)
	applied := b.Seed(t,
		stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_browser_one", Mutate: testkit.Set("charges_enabled", true)}),
		stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_browser_two", Mutate: testkit.Set("payouts_enabled", true)}),
	)
	for _, id := range applied {
		testenv.Eventually(t, 30*time.Second, "the pool to apply "+id, processedEvent(t, b, id))
	}
	return failingID, pool
}

// browser is a headless Chromium tab on the web UI at base, with what it
// reports as errors, and its login prompt answered by the test.
type browser struct {
	t        *testing.T
	tab      context.Context
	base     string
	outDir   string
	console  *browserConsole
	out      *testenv.Buffer
	login    atomic.Bool  // answer the login prompt (else refuse it)
	refused  atomic.Int32 // login prompts refused
	answered atomic.Int32 // login prompts answered
	handlers sync.WaitGroup
	close    func()
}

// startBrowser starts Chromium (exe) headless with a new profile.
func startBrowser(t *testing.T, ctx context.Context, exe, base string) *browser {
	t.Helper()
	br := &browser{t: t, base: base, outDir: browserOutputDir(t), console: newBrowserConsole(), out: &testenv.Buffer{}}
	t.Logf("screenshots in %s", br.outDir)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromiumOptions(t, exe, br.out)...)
	tab, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(br.console.listen))
	br.tab = tab
	br.close = func() {
		cancelTab()
		br.handlers.Wait()
		if t.Failed() {
			t.Logf("chromium output:\n%s", br.out.String())
		}
		cancelAlloc() // stops the browser and waits for it
	}
	if err := chromedp.Do(tab); err != nil {
		br.close()
		t.Fatalf("start chromium %s: %v\n%s", exe, err, br.out.String())
	}
	// chromedp enables the Log domain itself; enable it here too, since the
	// test relies on it for CSP violations and failed loads.
	if _, err := chromedp.Call(tab, cdplog.Enable, cdp.Empty{}); err != nil {
		br.close()
		t.Fatal(err)
	}
	br.handleLogin()
	return br
}

// chromiumOptions start the browser of a test: headless, in a profile of
// its own, its output to out.
func chromiumOptions(t *testing.T, exe string, out io.Writer) []chromedp.ExecAllocatorOption {
	return append(chromedp.DefaultExecAllocatorOptions[:], // headless, no first run, no background networking, no sync…
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // tests may run as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(out),
	)
}

// handleLogin answers logins as the browser's own prompt would take them:
// every request is let through, and the server's Basic challenge is
// refused until br.login is set, then answered with the console's
// credentials.
func (br *browser) handleLogin() {
	paused := chromedp.Events(br.tab, fetch.RequestPaused)
	challenges := chromedp.Events(br.tab, fetch.AuthRequired)
	br.handlers.Go(func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			if _, err := chromedp.Call(br.tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID}); err != nil && br.tab.Err() == nil {
				br.console.add(fmt.Sprintf("test: continue %s: %v", ev.Request.URL, err))
			}
		}
	})
	br.handlers.Go(func() {
		for ev, err := range challenges {
			if err != nil {
				return
			}
			br.answerLogin(ev)
		}
	})
	if _, err := chromedp.Call(br.tab, fetch.Enable, fetch.EnableParams{HandleAuthRequests: new(true)}); err != nil {
		br.close()
		br.t.Fatal(err)
	}
}

// answerLogin answers one login challenge.
func (br *browser) answerLogin(ev fetch.EventAuthRequired) {
	if c := ev.AuthChallenge; c == nil || !strings.EqualFold(c.Scheme, "basic") || c.Realm != "stripe-webhooks jobs" {
		br.console.add(fmt.Sprintf("test: unexpected login challenge for %s: %+v", ev.Request.URL, c))
	}
	answer := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
	if br.login.Load() {
		answer = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials,
			Username: "ops", Password: "s3cret"}
		br.answered.Add(1)
	} else {
		br.refused.Add(1)
	}
	if _, err := chromedp.Call(br.tab, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID,
		AuthChallengeResponse: answer}); err != nil && br.tab.Err() == nil {
		br.console.add(fmt.Sprintf("test: answer the login challenge for %s: %v", ev.Request.URL, err))
	}
}

func (br *browser) screenshot(name string) {
	br.t.Helper()
	png := browserRun(br.t, br.tab, "screenshot of "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(br.outDir, name+".png"), png, 0o644); err != nil {
		br.t.Fatal(err)
	}
}

// checkConsole fails the test for each error the browser reported since
// the last check, except those of expected, which it logs.
func (br *browser) checkConsole(page string, expected ...string) {
	br.t.Helper()
next:
	for _, m := range br.console.take() {
		for _, e := range expected {
			if m == e {
				br.t.Logf("%s page: the browser reported, as expected: %s", page, m)
				continue next
			}
		}
		br.t.Errorf("%s page: the browser reported: %s", page, m)
	}
}

// refusedLoad is the browser's report of a load of path refused for want
// of a login.
func (br *browser) refusedLoad(path string) string {
	return "network error: Failed to load resource: the server responded with a status of 401 (Unauthorized) (" + br.base + path + ")"
}

// loginRefused: without the login, 401, and nothing of the console.
func (br *browser) loginRefused() {
	t := br.t
	browserLoad(t, br.tab, "open /overview without a login", http.StatusUnauthorized, chromedp.Navigate(br.base+"/overview"))
	if body := browserRun(t, br.tab, "read the refusal", chromedp.Text(chromedp.CSS("body"))); !strings.Contains(body, "authentication required") || strings.Contains(body, "Failing") {
		t.Errorf("page without a login: %q, want the refusal only", body)
	}
	if br.refused.Load() < 1 {
		t.Error("the browser was never asked for a login")
	}
	br.screenshot("login-refused")
	// The errors this page may report are its own refused load, and that of
	// the icon the browser fetches for it.
	br.checkConsole("login-refused", br.refusedLoad("/overview"), br.refusedLoad("/favicon.ico"))
}

// overview: log in; the overview counts the events per status, its style
// sheet applies, and the listener catches what the browser reports.
func (br *browser) overview() {
	t := br.t
	br.login.Store(true)
	browserLoad(t, br.tab, "log in and open /overview", http.StatusOK, chromedp.Navigate(br.base+"/overview"))
	if br.answered.Load() < 1 {
		t.Error("the browser answered no login challenge")
	}
	if title := browserRun(t, br.tab, "overview title", chromedp.Title()); title != "Overview · stripe-webhooks console" {
		t.Errorf("overview title %q", title)
	}
	for label, want := range map[string]string{"Waiting": "0", "Failing": "1", "Dead": "0", "Processed": "2"} {
		if got := browserRun(t, br.tab, "overview "+label, chromedp.Text(definition(label))); got != want {
			t.Errorf("overview: %s %q, want %q", label, got, want)
		}
	}
	// The style sheet loaded under the CSP and the login: the nav bar has its colour.
	style := browserRun(t, br.tab, "nav style", chromedp.ComputedStyle(chromedp.CSS("nav")))
	var navBackground string
	for _, p := range style {
		if p.Name == "background-color" {
			navBackground = p.Value
		}
	}
	if navBackground != "rgb(45, 62, 80)" {
		t.Errorf("nav background %q: the console's style sheet did not apply", navBackground)
	}
	br.screenshot("overview")
	// The browser fetches the icon of the refused page after its load: the
	// refusal may be reported only now.
	br.checkConsole("overview", br.refusedLoad("/favicon.ico"))
	br.canary()
}

// canary causes an inline style the CSP refuses and a console error, and
// checks that the listener sees both.
func (br *browser) canary() {
	t := br.t
	browserRun(t, br.tab, "cause a CSP violation and a console error", chromedp.Evaluate[chromedp.Void](
		`document.body.setAttribute("style", "outline: 1px solid red"); console.error("browser test canary")`))
	for _, want := range []string{"Content Security Policy", "browser test canary"} {
		wctx, wcancel := context.WithTimeout(br.tab, browserStepTimeout)
		m, err := br.console.await(wctx, want)
		wcancel()
		if err != nil {
			t.Fatalf("the console listener misses errors: %v", err)
		}
		t.Logf("canary caught: %s", m)
	}
	br.checkConsole("overview (after the canary)")
}

// filterFailing: the events list, filtered to failing events with its form,
// lists the failing event alone.
func (br *browser) filterFailing(failingID string) {
	t := br.t
	browserLoad(t, br.tab, "follow the Events link", http.StatusOK, chromedp.Click(chromedp.CSS(`nav a[href="/events"]`)))
	status := chromedp.CSS(`form.filters select[name="status"]`)
	browserRun(t, br.tab, "choose the failing status", chromedp.SendKeys(status, "failing"))
	if v := browserRun(t, br.tab, "read the status field", chromedp.Value(status)); v != "failing" {
		t.Fatalf("status field %q after typing, want failing", v)
	}
	browserLoad(t, br.tab, "submit the filter", http.StatusOK, chromedp.Click(chromedp.CSS(`form.filters button`)))
	// The form sent every field: the browser submitted it.
	if loc := browserRun(t, br.tab, "filtered location", chromedp.Location()); loc != br.base+"/events?status=failing&type=&account=&id=&from=&to=" {
		t.Errorf("filtered list at %s, want the form's GET with status=failing", loc)
	}
	links := browserRun(t, br.tab, "the listed events", chromedp.AttributesAll(chromedp.CSSAll(`table tbody tr td:nth-child(2) a`)))
	var listed []string
	for _, a := range links {
		listed = append(listed, a["href"])
	}
	if len(listed) != 1 || listed[0] != "/events/"+failingID {
		t.Fatalf("filtered list links %q, want only /events/%s", listed, failingID)
	}
	if s := browserRun(t, br.tab, "the listed status", chromedp.Text(chromedp.CSS(`table tbody tr td:nth-child(5)`))); s != "failing" {
		t.Errorf("listed status %q, want failing", s)
	}
	br.screenshot("events-filtered")
	br.checkConsole("events-filtered")
}

// eventPage: the failing event's page shows its failure.
func (br *browser) eventPage(failingID string) {
	t := br.t
	browserLoad(t, br.tab, "open the failing event", http.StatusOK, chromedp.Click(chromedp.CSS(`table tbody a[href="/events/`+failingID+`"]`)))
	for label, want := range map[string]string{"Stripe event id": failingID, "Status": "failing", "Retry count": "3",
		"Error": "handler failed: stripe account lock timeout", "Processed": "—"} {
		if got := browserRun(t, br.tab, "event "+label, chromedp.Text(definition(label))); got != want {
			t.Errorf("event page: %s %q, want %q", label, got, want)
		}
	}
	br.screenshot("event")
	br.checkConsole("event")
}

// replay replays the event (a form POST, answered with a redirect to the
// page), and reloads the page until it shows the event processed.
func (br *browser) replay(failingID string) {
	t := br.t
	browserLoad(t, br.tab, "click Replay", http.StatusOK, chromedp.Click(chromedp.CSS(`form[action="/events/`+failingID+`/replay"] button`)))
	if loc := browserRun(t, br.tab, "location after the replay", chromedp.Location()); loc != br.base+"/events/"+failingID+"?replay=applied" {
		t.Errorf("after the replay the browser is at %s, want the event's page with replay=applied", loc)
	}
	if msg := browserRun(t, br.tab, "replay message", chromedp.Text(chromedp.CSS(`p.message`))); msg != "Replayed: the event was applied." {
		t.Errorf("replay message %q", msg)
	}
	pollCtx, pollCancel := context.WithTimeout(br.tab, 30*time.Second)
	defer pollCancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if s := browserRun(t, br.tab, "event status", chromedp.Text(definition("Status"))); s == "processed" {
			break
		}
		select {
		case <-pollCtx.Done():
			t.Fatalf("the event's page never showed it processed: %v", pollCtx.Err())
		case <-tick.C:
		}
		browserLoad(t, br.tab, "reload the event", http.StatusOK, chromedp.Reload())
	}
	if got := browserRun(t, br.tab, "event processed time", chromedp.Text(definition("Processed"))); got == "—" || !strings.HasSuffix(got, " UTC") {
		t.Errorf("event page: Processed %q, want a time", got)
	}
	if got := browserRun(t, br.tab, "event error", chromedp.Text(definition("Error"))); got != "—" {
		t.Errorf("event page: Error %q after the replay, want none", got)
	}
	br.screenshot("event-replayed")
	br.checkConsole("event-replayed")
}

// checkReplayedOnce: in Postgres one row, processed once by the replay,
// with no error; applied by the replay (one logged console action), never
// by the pool, which applied only the two queued events.
func checkReplayedOnce(t *testing.T, b *testkit.Backend, ui, pool *service, failingID string) {
	t.Helper()
	var row struct {
		Rows       int64
		Processed  bool
		Failed     bool
		RetryCount int
	}
	if err := b.Store.DB().Raw(`SELECT count(*) AS rows, bool_and(processed AND processed_at IS NOT NULL) AS processed,
		bool_or(error IS NOT NULL OR dead_at IS NOT NULL OR next_attempt_at IS NOT NULL) AS failed, max(retry_count) AS retry_count
		FROM webhook_events WHERE stripe_event_id = ?`, failingID).Scan(&row).Error; err != nil {
		t.Fatal(err)
	}
	if row.Rows != 1 || !row.Processed || row.Failed || row.RetryCount != 3 {
		t.Errorf("replayed event in Postgres: %+v, want one row, processed, no failure, retry count still 3", row)
	}
	if !chargesEnabled(t, b, browserFailingAccount) {
		t.Error("the replay did not apply the event to its account")
	}
	var actions int
	for _, l := range strings.Split(ui.logs.String(), "\n") {
		if strings.Contains(l, "console action") && strings.Contains(l, failingID) {
			actions++
			if !strings.Contains(l, "ops") || !strings.Contains(l, "applied") {
				t.Errorf("replay log line lacks the user or the result: %s", l)
			}
		}
	}
	if actions != 1 {
		t.Errorf("%d console actions logged for %s, want 1", actions, failingID)
	}
	if n := appliedCounts(pool.logs.String())[failingID]; n != 0 {
		t.Errorf("the pool applied the replayed event %d times, want never", n)
	}
	if m := metricsOf(t, pool.base); !strings.Contains(m, `stripe_webhooks_events_processed_total{event_type="account.updated"} 2`) {
		t.Errorf("pool's processed counter is not 2:\n%s", grep(m, "stripe_webhooks_events_processed_total"))
	}
}
