// Package webui is the web UI's front door, `worker webui` on WEBUI_ADDR:
// who may come in and what they may do (package access: WEBUI_AUTH basic,
// proxy or none; operators and viewers), the refusal of cross-site
// changes, the audit trail of every change, a health route for probes,
// and behind them the console's pages (package console) and the
// gocraft/work job UI: queues, busy workers, retrying and dead jobs, and
// buttons to retry or delete dead ones. The job UI has no login of its own
// and exposes no http.Handler, so JobUI serves it on a private loopback
// port and proxies to it at /.
//
// A request passes, in order:
//
//  1. the login (access.Authenticator): 401 without an identity, 403 for
//     a proxy user in none of the groups. The basic auth header is
//     removed before a request reaches the job UI.
//  2. the refusal of cross-site changes: a state-changing request sent
//     from another site's page gets 403, judged by the browser's
//     Sec-Fetch-Site and Origin headers (net/http.CrossOriginProtection).
//  3. the role (access.Guard): any method but GET and HEAD is a change,
//     and a viewer's change gets 403, whatever the route.
//  4. the audit trail (access.Trail.Audited): every change that got this
//     far is recorded once answered, in Postgres and the log.
//
// GET /healthz answers 200 without a login, for the kubelet's probes.
//
// # Every change and who may make it
//
// The web UI changes state on six routes, all POST, operators only (a
// viewer's request of any method but GET and HEAD is 403 before routing);
// each is recorded in the audit trail under its action with what it names:
//
//	POST /events/{evt_…}/replay               replay (console): the event id, the result
//	POST /events/replay                       replay_bulk (console): every event id, the counts
//	POST /retry_dead_job/<died_at>/<job_id>   retry_dead_job (job UI): the job id, its event id, died_at
//	POST /delete_dead_job/<died_at>/<job_id>  delete_dead_job (job UI): the same
//	POST /retry_all_dead_jobs                 retry_all_dead_jobs (job UI): how many dead jobs there were
//	POST /delete_all_dead_jobs                delete_all_dead_jobs (job UI): the same
//
// Any other non-GET request an operator sends is recorded as "other".
// TestJobUIRoutesAreKnown holds the job UI's routes to gocraft/work's
// source, and the worker command's TestWebUIChangingRoutesAreAllInTheTable
// the console's to its router; both tables are called as a viewer (403,
// nothing changed) and as an operator (changed, recorded).
//
// The job UI's other routes are GET: the page (/ and /work.js) and its JSON API
// (/queues, /worker_pools, /busy_workers, /retry_jobs, /scheduled_jobs,
// /dead_jobs). The API works through the front door for scripts, such as
// curl -u ops:… -X POST http://127.0.0.1:5040/retry_all_dead_jobs.
//
// The job UI's page is a script that draws the retry and delete buttons
// itself. For a viewer, its HTML (GET /) carries a style sheet that hides
// every button and check box of the job UI and says the page is read-only;
// their POSTs are refused at step 3 in any case.
package webui

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"stripe-webhooks/worker/internal/access"
)

// Options are what Handler serves.
type Options struct {
	// Access identifies the users and their roles.
	Access *access.Authenticator
	// Trail records every change.
	Trail *access.Trail
	// Logger receives the refusals of viewers' changes.
	Logger *slog.Logger
	// Pages are the routes served before the job UI (the console's).
	Pages func(*http.ServeMux)
	// Jobs serves every other path: the job UI.
	Jobs http.Handler
}

// Handler is the web UI: o.Pages, then o.Jobs for every other path,
// behind the login, the cross-site refusal, the role check and the audit
// trail (see the package documentation). GET /healthz answers 200 without
// a login, for the kubelet's probes; the job UI has no route of that name.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
	})
	pages := http.NewServeMux()
	if o.Pages != nil {
		o.Pages(pages)
	}
	pages.Handle("/", o.Jobs)
	h := o.Trail.Audited(pages)
	h = access.Guard(o.Logger, h)
	h = http.NewCrossOriginProtection().Handler(h)
	mux.Handle("/", o.Access.Middleware(h))
	return mux
}
