package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/ssotest"
	"stripe-webhooks/worker/internal/testkit"
)

// ssoUser is someone the mock provider signs in, and the role the web UI
// gives them from their groups.
type ssoUser struct {
	email, group, role string
}

var (
	ssoViewer   = ssoUser{"bo.support@example.com", "ops-viewers", "viewer"}
	ssoOperator = ssoUser{"ana.sre@example.com", "ops-operators", "operator"}
)

// ssoWebUIEnv is `worker webui` behind oauth2-proxy on this machine.
var ssoWebUIEnv = map[string]string{
	"WEBUI_AUTH":            "proxy",
	"WEBUI_TRUSTED_PROXIES": "127.0.0.1/32",
	"WEBUI_OPERATOR_GROUPS": ssoOperator.group,
	"WEBUI_VIEWER_GROUPS":   ssoViewer.group,
}

// The web UI behind single sign-on, end to end: the real `worker webui`
// (WEBUI_AUTH=proxy) behind the real oauth2-proxy, a mock OpenID Connect
// provider, and Chromium. A viewer signs in through the provider, sees the
// console and the job UI without a replay, retry or delete button, and
// their replay and retry POSTs, sent from their signed-in page, are 403
// and change nothing. An operator, in a browser context of their own,
// replays the failing event with the console's button and retries the
// dead job with the job UI's; Postgres and Redis show both done, and
// /audit lists both, newest first, under the operator's e-mail. Anything
// the browser reports as an error, other than the viewer's two refusals,
// fails the test. /audit's screenshot is written to $TEST_OUTPUT_DIR as
// audit.png (else to a new folder under the temporary directory, which
// the log names).
func TestWebUISingleSignOnInTheBrowser(t *testing.T) {
	t.Parallel()
	exe, err := chromiumPath()
	testenv.RequireServer(t, "no chromium", err)
	began := time.Now()
	defer func() { t.Logf("single sign-on browser test ran %s", time.Since(began).Round(time.Millisecond)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	b := testkit.NewBackend(t)
	seed := seedSSO(t, b)
	ui := startWebUI(t, b, ssoWebUIEnv)
	sso := ssotest.Start(t, ui.base)
	root := startSSOBrowser(t, ctx, exe)

	viewer := root.signIn(sso, ssoViewer)
	viewer.seesConsole(seed)
	viewer.seesJobUI(seed)
	before := tableState(t, b)
	viewer.isRefused(seed)
	if after := tableState(t, b); after != before {
		t.Errorf("the viewer's refused requests changed the state:\nbefore %s\nafter  %s", before, after)
	}

	operator := root.signIn(sso, ssoOperator)
	operator.replays(seed)
	operator.retriesDeadJob(seed)
	checkSSOChanges(t, b, seed)
	operator.auditLists(seed)
	viewer.checkConsole("viewer's last page")
	operator.checkConsole("operator's last page")
}

// ssoSeed is what the test puts in the web UI's database and namespace.
type ssoSeed struct {
	failingID string // a failing event, its retry an hour away: the console replays it
	deadID    string // a dead event, whose job is in the dead set
	jobID     string // that dead job
	diedAt    int64
}

// seedSSO stores a failing event and a dead one, and files the dead
// one's job in the dead set, as a worker pool leaves them. No pool runs,
// so only the web UI changes them.
func seedSSO(t *testing.T, b *testkit.Backend) ssoSeed {
	t.Helper()
	s := ssoSeed{jobID: "job_sso_dead"}
	failing := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_sso_replay",
		Mutate: testkit.Set("charges_enabled", true)})
	dead := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: "acct_sso_dead"})
	s.failingID, s.deadID = testkit.EventID(failing), testkit.EventID(dead)
	b.StoreOnly(t, failing)
	b.StoreOnly(t, dead)
	db := b.Store.DB()
	if err := db.Exec(`UPDATE webhook_events SET error = 'handler failed: stripe account lock timeout', retry_count = 3,
		next_attempt_at = now() + interval '1 hour' WHERE stripe_event_id = ?`, s.failingID).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`UPDATE webhook_events SET error = 'handler failed: connected account missing', retry_count = 5,
		dead_at = now() WHERE stripe_event_id = ?`, s.deadID).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	row, err := b.Store.EventByStripeID(context.Background(), s.deadID)
	if err != nil {
		t.Fatal(err)
	}
	conn := b.Pool(t).Get()
	defer conn.Close()
	if _, err := conn.Do("SADD", b.Namespace+":known_jobs", queue.JobName); err != nil { // as a pool registers it
		t.Fatal(err)
	}
	job := &work.Job{Name: queue.JobName, ID: s.jobID, EnqueuedAt: time.Now().Add(-time.Hour).Unix(), Fails: 4,
		Args: queue.Job{WebhookID: row.ID, EventID: s.deadID, EventType: row.EventType}.Args()}
	if err := b.Enqueuer.Kill(context.Background(), job, "handler failed: connected account missing"); err != nil {
		t.Fatal(err)
	}
	s.diedAt = b.DeadJobs(t)[s.jobID]
	return s
}

// ssoBrowser is a headless Chromium in which each user signs in in a
// browser context of their own (their own cookies).
type ssoBrowser struct {
	t      *testing.T
	root   context.Context
	outDir string
}

// startSSOBrowser starts Chromium (exe) headless with a new profile, as
// the console's browser test does, until the test ends.
func startSSOBrowser(t *testing.T, ctx context.Context, exe string) *ssoBrowser {
	t.Helper()
	out := &testenv.Buffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromiumOptions(t, exe, out)...)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelRoot()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
		cancelAlloc() // stops the browser and waits for it
	})
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium %s: %v\n%s", exe, err, out.String())
	}
	br := &ssoBrowser{t: t, root: root, outDir: browserOutputDir(t)}
	t.Logf("screenshots in %s", br.outDir)
	return br
}

// ssoTab is one user's tab, in their own browser context, on the proxy.
// Its browser holds what the page reports as errors (checkConsole) and
// takes the screenshots.
type ssoTab struct {
	*browser
	user      ssoUser
	authorize atomic.Int32 // requests of the tab to the provider's sign-in page
}

// signIn opens the console's overview through the proxy in a new browser
// context as u: with no session the proxy sends the browser to the mock
// provider, which signs u in and sends it back to the page.
func (br *ssoBrowser) signIn(sso *ssotest.SSO, u ssoUser) *ssoTab {
	t := br.t
	t.Helper()
	tab := &ssoTab{user: u}
	console := newBrowserConsole()
	ctx, cancel := chromedp.NewContext(br.root, chromedp.WithNewBrowserContext(), chromedp.WithListener(func(ev any) {
		console.listen(ev)
		if req, ok := ev.(*network.EventRequestWillBeSent); ok && strings.HasPrefix(req.Request.URL, sso.Issuer+"/authorize?") {
			tab.authorize.Add(1)
		}
	}))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil { // CSP violations and failed loads
		t.Fatal(err)
	}
	tab.browser = &browser{t: t, tab: ctx, base: sso.URL, outDir: br.outDir, console: console}

	sso.SignInAs(u.email, u.group)
	browserLoad(t, ctx, u.role+" signs in", http.StatusOK, chromedp.Navigate(sso.URL+"/overview"))
	if loc := browserRun(t, ctx, "location after the sign-in", chromedp.Location()); loc != sso.URL+"/overview" {
		t.Errorf("%s: signed in at %s, want the proxy's /overview", u.role, loc)
	}
	if n := tab.authorize.Load(); n != 1 {
		t.Errorf("%s: the browser went to the provider's sign-in %d times, want once", u.role, n)
	}
	tab.checkWho("overview")
	tab.checkConsole(u.role + " sign-in")
	return tab
}

// checkWho checks that the console's nav bar names the tab's user and role.
func (tab *ssoTab) checkWho(page string) {
	tab.t.Helper()
	want := fmt.Sprintf("%s (%s)", tab.user.email, tab.user.role)
	if got := browserRun(tab.t, tab.tab, "who on "+page, chromedp.Text(chromedp.CSS("nav .who"))); got != want {
		tab.t.Errorf("%s: the nav bar names %q, want %q", page, got, want)
	}
}

// open loads path through the proxy (200) and waits for its load.
func (tab *ssoTab) open(path string) {
	tab.t.Helper()
	browserLoad(tab.t, tab.tab, tab.user.role+" opens "+path, http.StatusOK, chromedp.Navigate(tab.base+path))
}

// seesConsole: the viewer reads the overview, the events list and the
// failing event's page, which has no Replay button, nor has the list.
func (tab *ssoTab) seesConsole(s ssoSeed) {
	t := tab.t
	for label, want := range map[string]string{"Failing": "1", "Dead": "1", "Processed": "0", "Dead set (jobs)": "1"} {
		if got := browserRun(t, tab.tab, "overview "+label, chromedp.Text(definition(label))); got != want {
			t.Errorf("viewer's overview: %s %q, want %q", label, got, want)
		}
	}
	tab.open("/events?status=failing")
	links := browserRun(t, tab.tab, "listed events", chromedp.AttributesAll(chromedp.CSSAll(`table tbody td:nth-child(2) a`)))
	if len(links) != 1 || links[0]["href"] != "/events/"+s.failingID {
		t.Errorf("viewer's list of failing events links %v, want /events/%s", links, s.failingID)
	}
	tab.noChangeButtons("failing events", "Replay these…")
	tab.open("/events/" + s.failingID)
	if got := browserRun(t, tab.tab, "event status", chromedp.Text(definition("Status"))); got != "failing" {
		t.Errorf("viewer's event page: Status %q, want failing", got)
	}
	tab.noChangeButtons("event", "Replay this event")
	tab.checkWho("event")
	tab.screenshot("sso-viewer-event")
	tab.checkConsole("viewer's console")
}

// noChangeButtons checks that the page has no form posting anything and
// no button labelled label.
func (tab *ssoTab) noChangeButtons(page, label string) {
	tab.t.Helper()
	n := browserRun(tab.t, tab.tab, "change controls on "+page, chromedp.Evaluate[int](fmt.Sprintf(
		`document.querySelectorAll('form[method=post]').length + [...document.querySelectorAll('button')].filter(b => b.textContent.trim() === %q).length`, label)))
	if n != 0 {
		tab.t.Errorf("%s's %s page shows %d forms posting or %q buttons, want none", tab.user.role, page, n, label)
	}
}

// jobUIControls are the job UI's controls visible on its dead jobs page,
// and its notice ("none" without).
type jobUIControls struct {
	Buttons, CheckBoxes int
	Banner              string
}

// deadJobsPage opens the job UI's dead jobs page (gocraft/work's own
// script draws it), waits until it lists the dead job and counts the
// visible controls.
func (tab *ssoTab) deadJobsPage(s ssoSeed) jobUIControls {
	t := tab.t
	t.Helper()
	tab.open("/#/dead_jobs")
	tab.waitFor("the dead job listed", fmt.Sprintf(`document.querySelector("#app") !== null && document.querySelector("#app").innerText.includes(%q)`, s.deadID))
	tab.waitFor("one dead job counted", jobUICount(1))
	return browserRun(t, tab.tab, "job UI controls", chromedp.Evaluate[jobUIControls](`(() => {
		const visible = sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null).length;
		return {Buttons: visible("#app button"), CheckBoxes: visible("#app input[type=checkbox]"),
			Banner: getComputedStyle(document.body, "::before").content};
	})()`))
}

// jobUICount is a predicate: the dead jobs page says n jobs are dead.
func jobUICount(n int) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#app p")].some(p => p.textContent === "%d job(s) are dead.")`, n)
}

// waitFor polls the page until the JavaScript predicate holds.
func (tab *ssoTab) waitFor(what, predicate string) {
	tab.t.Helper()
	browserRun(tab.t, tab.tab, tab.user.role+": wait for "+what,
		chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(browserStepTimeout)))
}

// seesJobUI: the viewer sees the dead job in the job UI, with no button
// and no check box, and the read-only notice.
func (tab *ssoTab) seesJobUI(s ssoSeed) {
	c := tab.deadJobsPage(s)
	if c.Buttons != 0 || c.CheckBoxes != 0 || !strings.Contains(c.Banner, "Read only") {
		tab.t.Errorf("viewer's dead jobs page shows %+v, want no button, no check box, the read-only notice", c)
	}
	tab.screenshot("sso-viewer-dead-jobs")
	tab.checkConsole("viewer's job UI")
}

// postAnswer is what a POST sent by the page got back.
type postAnswer struct {
	Path, Body string
	Status     int
}

// isRefused: from the job UI's page (the console's pages allow no script
// to connect anywhere), with the viewer's session, the page POSTs the
// console's replay of the failing event and the job UI's retry of the
// dead job: both are 403 from the web UI itself.
func (tab *ssoTab) isRefused(s ssoSeed) {
	t := tab.t
	tab.open("/")
	paths := []string{"/events/" + s.failingID + "/replay", fmt.Sprintf("/retry_dead_job/%d/%s", s.diedAt, s.jobID)}
	js, _ := json.Marshal(paths)
	answers := browserRun(t, tab.tab, "viewer POSTs the changes", chromedp.Evaluate[[]postAnswer](fmt.Sprintf(`(async () => {
		const out = [];
		for (const path of %s) {
			const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: ""});
			out.push({Path: path, Status: r.status, Body: await r.text()});
		}
		return out;
	})()`, js), chromedp.EvalAwaitPromise))
	if len(answers) != len(paths) {
		t.Fatalf("viewer's POSTs: %d answers, want %d", len(answers), len(paths))
	}
	var expected []string
	for i, a := range answers {
		if a.Path != paths[i] || a.Status != http.StatusForbidden || !strings.Contains(a.Body, "viewers cannot change anything") {
			t.Errorf("viewer's POST %s: %d %.200q, want the web UI's 403", paths[i], a.Status, a.Body)
		}
		expected = append(expected, "network error: Failed to load resource: the server responded with a status of 403 (Forbidden) ("+tab.base+a.Path+")")
	}
	tab.checkConsole("viewer's refused POSTs", expected...)
}

// replays: the operator replays the failing event with its page's button;
// the page comes back with the result and the event processed.
func (tab *ssoTab) replays(s ssoSeed) {
	t := tab.t
	tab.open("/events/" + s.failingID)
	tab.checkWho("event")
	browserLoad(t, tab.tab, "click Replay this event", http.StatusOK,
		chromedp.Click(chromedp.CSS(`form[action="/events/`+s.failingID+`/replay"] button`)))
	if loc := browserRun(t, tab.tab, "location after the replay", chromedp.Location()); loc != tab.base+"/events/"+s.failingID+"?replay=applied" {
		t.Errorf("after the replay the browser is at %s, want the event's page with replay=applied", loc)
	}
	if msg := browserRun(t, tab.tab, "replay message", chromedp.Text(chromedp.CSS(`p.message`))); msg != "Replayed: the event was applied." {
		t.Errorf("replay message %q", msg)
	}
	if got := browserRun(t, tab.tab, "event status", chromedp.Text(definition("Status"))); got != "processed" {
		t.Errorf("event page after the replay: Status %q, want processed", got)
	}
	tab.checkConsole("operator's replay")
}

// retriesDeadJob: the operator sees the job UI's buttons, selects the
// dead job and clicks Retry Selected Jobs; the page then counts no dead
// job.
func (tab *ssoTab) retriesDeadJob(s ssoSeed) {
	t := tab.t
	if c := tab.deadJobsPage(s); c.Buttons != 4 || c.CheckBoxes != 2 || c.Banner != "none" {
		t.Errorf("operator's dead jobs page shows %+v, want the 4 buttons, 2 check boxes, no notice", c)
	}
	row := fmt.Sprintf(`//tr[td[contains(., %q)]]/td/input[@type="checkbox"]`, s.deadID)
	browserRun(t, tab.tab, "select the dead job", chromedp.Click(chromedp.Search(row)))
	tab.waitFor("the dead job selected", `document.querySelectorAll("#app tr td input[type=checkbox]:checked").length === 1`)
	browserRun(t, tab.tab, "click Retry Selected Jobs", chromedp.Click(chromedp.Search(`//button[normalize-space()="Retry Selected Jobs"]`)))
	tab.waitFor("no dead job counted", jobUICount(0))
	tab.checkConsole("operator's retry")
}

// checkSSOChanges: in Postgres the failing event is processed, its error
// cleared, and applied to its account; in Redis the dead set is empty and
// the dead job waits in the queue again, for the same event.
func checkSSOChanges(t *testing.T, b *testkit.Backend, s ssoSeed) {
	t.Helper()
	row, err := b.Store.EventByStripeID(context.Background(), s.failingID)
	if err != nil {
		t.Fatal(err)
	}
	if !row.Processed || row.ProcessedAt == nil || row.Error != nil || row.NextAttemptAt != nil || row.RetryCount != 3 {
		t.Errorf("replayed event: processed %v at %v, error %v, next attempt %v, retry count %d; want processed, no error, retry count 3",
			row.Processed, row.ProcessedAt, row.Error, row.NextAttemptAt, row.RetryCount)
	}
	if !chargesEnabled(t, b, "acct_sso_replay") {
		t.Error("the replay did not apply the event to its account")
	}
	if dead := b.DeadJobs(t); len(dead) != 0 {
		t.Errorf("dead set after the retry: %v, want empty", dead)
	}
	conn := b.Pool(t).Get()
	defer conn.Close()
	raws, err := redis.ByteSlices(conn.Do("LRANGE", queue.ListKey(b.Namespace), 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	var queued []string
	for _, raw := range raws {
		var j work.Job
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatal(err)
		}
		queued = append(queued, j.ID+" "+j.ArgString("event_id"))
	}
	if want := []string{s.jobID + " " + s.deadID}; !slices.Equal(queued, want) {
		t.Errorf("queue after the retry: %q, want %q", queued, want)
	}
}

// auditRow is a row of /audit as the browser shows it.
type auditRow struct {
	User, Action, Path, Targets, Result, Status string
}

// auditLists: /audit lists the retry, then the replay (newest first),
// each under the operator's e-mail, with what it named and its result,
// and nothing of the viewer's refused POSTs. Its screenshot is audit.png.
func (tab *ssoTab) auditLists(s ssoSeed) {
	t := tab.t
	tab.open("/audit")
	rows := browserRun(t, tab.tab, "audit rows", chromedp.Evaluate[[]auditRow](`[...document.querySelectorAll("table.audit tbody tr")].map(tr => {
		const td = [...tr.querySelectorAll("td")].map(c => c.innerText.trim());
		const [action, path] = td[2].split("\n");
		return {User: td[1], Action: action, Path: path, Targets: td[3], Result: td[4], Status: td[5]};
	})`))
	who := tab.user.email + " (operator)"
	want := []auditRow{
		{who, "retry_dead_job", fmt.Sprintf("POST /retry_dead_job/%d/%s", s.diedAt, s.jobID), s.deadID + " job " + s.jobID, fmt.Sprintf("died_at %d", s.diedAt), "200"},
		{who, "replay", "POST /events/" + s.failingID + "/replay", s.failingID, "applied", "303"},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("/audit lists\n%+v\nwant\n%+v", rows, want)
	}
	path := filepath.Join(tab.outDir, "audit.png")
	tab.screenshot("audit")
	t.Logf("/audit's screenshot: %s", path)
	tab.checkConsole("audit")
}
