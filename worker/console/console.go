package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/internal/access"
)

// files holds the console's templates and its style sheet.
//
//go:embed *.html console.css
var files embed.FS

// csp lets a console page load only its own style sheet: no script,
// no frame, no form posting elsewhere.
const csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const (
	consolePageSize    = 50
	consoleMaxPageSize = 500
)

// Console serves pages of the events and accounts in Postgres, beside the
// gocraft/work job UI, on paths that UI does not use. Its one write is the
// replay of events, which it leaves to Options.Replay.
type Console struct {
	store     *store.Store
	pool      *redis.Pool
	namespace string
	logger    *slog.Logger
	replay    ReplayFunc
	pages     map[string]*template.Template
	css       []byte
}

// Options are what a Console works with.
type Options struct {
	Store *store.Store
	// Redis and Namespace are where the job dead set is counted.
	Redis     *redis.Pool
	Namespace string
	Logger    *slog.Logger
	// Replay applies a stored event again.
	Replay ReplayFunc
}

// ReplayFunc applies the stored event stripeEventID again and says how;
// an error with no result is a failure to read the event at all.
type ReplayFunc func(ctx context.Context, stripeEventID string) (ReplayResult, error)

// ReplayResult is what a replay did, as the event page reports it.
type ReplayResult string

// The results of a replay.
const (
	ReplayApplied   ReplayResult = "applied"
	ReplayFailed    ReplayResult = "failed"
	ReplayOtherMode ReplayResult = "mode" // the Stripe mode this deployment never applies
	ReplayNotFound  ReplayResult = "notfound"
)

// New returns the console, its templates parsed.
func New(o Options) (*Console, error) {
	funcs := template.FuncMap{"ts": formatTime, "short": shortError}
	c := &Console{store: o.Store, pool: o.Redis, namespace: o.Namespace, logger: o.Logger, replay: o.Replay,
		pages: map[string]*template.Template{}}
	for _, name := range []string{"overview", "events", "event", "account", "replay", "audit"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "layout.html", name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	css, err := fs.ReadFile(files, "console.css")
	if err != nil {
		return nil, fmt.Errorf("console: style sheet: %w", err)
	}
	c.css = css
	return c, nil
}

// routes are the console's routes: a pattern and its handler each. Only
// the POSTs change anything (replays); a GET of a replay path replays
// nothing.
func (c *Console) routes() []route {
	return []route{
		{"GET /overview", c.overview},
		{"GET /events", c.events},
		{"GET /events/{id}", c.event},
		{"GET /events/replay", c.replayBulkConfirm},
		{"POST /events/replay", c.replayBulk},
		{"POST /events/{id}/replay", c.replayOne},
		{"GET /events/{id}/replay", c.replayGet},
		{"GET /accounts/{id}", c.account},
		{"GET /audit", c.audit},
		{"GET /console/console.css", c.style},
		{"GET /favicon.ico", c.favicon},
	}
}

type route struct {
	pattern string
	handler http.HandlerFunc
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *http.ServeMux) {
	for _, rt := range c.routes() {
		mux.HandleFunc(rt.pattern, rt.handler)
	}
}

// Patterns are the console's route patterns ("GET /events/{id}"), for the
// tests that hold every route to its role.
func (c *Console) Patterns() []string {
	var out []string
	for _, rt := range c.routes() {
		out = append(out, rt.pattern)
	}
	return out
}

// favicon answers the request every browser makes for /favicon.ico with no
// icon (204): the job UI's 404 for it is an error in the browser's console
// on every page.
func (c *Console) favicon(w http.ResponseWriter, r *http.Request) {
	setConsoleHeaders(w)
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) style(w http.ResponseWriter, r *http.Request) {
	setConsoleHeaders(w)
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(c.css)
}

func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseEventFilter(q)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	before, limit, err := parsePage(q)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	events, err := c.store.ListEvents(r.Context(), f, before, limit)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	c.render(w, r, "events", map[string]any{
		"Title":    "Events",
		"Filter":   f,
		"From":     q.Get("from"),
		"To":       q.Get("to"),
		"Statuses": []string{store.StatusWaiting, store.StatusFailing, store.StatusDead, store.StatusProcessed},
		"Events":   events,
		"Pager":    newPager("/events", q, before, events, limit),
		"Bulk":     bulkLink(f, q),
	})
}

func (c *Console) event(w http.ResponseWriter, r *http.Request) {
	e, err := c.store.EventDetail(r.Context(), r.PathValue("id"))
	if store.IsNotFound(err) {
		c.fail(w, http.StatusNotFound, "no event with that id is stored")
		return
	}
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	var top struct {
		Account string `json:"account"`
	}
	_ = json.Unmarshal(e.Payload, &top)
	c.render(w, r, "event", map[string]any{
		"Title":   e.StripeEventID,
		"Event":   e,
		"Account": top.Account,
		"Payload": prettyJSON(e.Payload),
		"Replay":  replayMessages[r.URL.Query().Get("replay")],
	})
}

// capability is one row of the account page's capability table.
type capability struct {
	Name, Status string
	EventCreated *time.Time
}

func (c *Console) account(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	before, limit, err := parsePage(q)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	d, err := c.store.AccountDetail(r.Context(), id)
	found := err == nil
	if err != nil && !store.IsNotFound(err) {
		c.serverError(w, r, err)
		return
	}
	events, err := c.store.ListEvents(r.Context(), store.EventFilter{Account: id}, before, limit)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	if !found && len(events) == 0 && before.WebhookID == "" {
		c.fail(w, http.StatusNotFound, "no account or event with that account id is stored")
		return
	}
	var caps []capability
	if found {
		caps = capabilities(d.Account)
	}
	c.render(w, r, "account", map[string]any{
		"Title":        id,
		"Found":        found,
		"Detail":       d,
		"Requirements": prettyJSON(d.Account.Requirements),
		"Capabilities": caps,
		"Events":       events,
		"Pager":        newPager("/accounts/"+url.PathEscape(id), q, before, events, limit),
	})
}

// capabilities pairs each capability's status with the Stripe `created`
// time of the event that set it, sorted by name.
func capabilities(a store.ConnectedAccount) []capability {
	var status map[string]string
	var created map[string]int64
	_ = json.Unmarshal(a.Capabilities, &status)
	_ = json.Unmarshal(a.CapabilitiesEventCreated, &created)
	out := make([]capability, 0, len(status))
	for name, s := range status {
		c := capability{Name: name, Status: s}
		if sec, ok := created[name]; ok {
			t := time.Unix(sec, 0).UTC()
			c.EventCreated = &t
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// pager holds the links to the newest page and to the next older one.
type pager struct {
	First, Older string
}

func newPager(path string, q url.Values, before store.Cursor, events []store.EventSummary, limit int) pager {
	var p pager
	if before.WebhookID != "" {
		first := cloneValues(q)
		first.Del("before")
		p.First = withQuery(path, first)
	}
	if len(events) == limit {
		older := cloneValues(q)
		older.Set("before", formatCursor(events[len(events)-1].Cursor()))
		p.Older = withQuery(path, older)
	}
	return p
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		if len(v) > 0 && v[0] != "" {
			out[k] = []string{v[0]}
		}
	}
	return out
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// formatCursor writes a cursor: the row id of the page's last event (ids
// order events by their Stripe `created`).
func formatCursor(c store.Cursor) string {
	return c.WebhookID
}

func parseCursor(s string) (store.Cursor, error) {
	if !uuidPattern.MatchString(s) {
		return store.Cursor{}, errors.New("before: not a cursor of this console")
	}
	return store.Cursor{WebhookID: strings.ToLower(s)}, nil
}

// uuidPattern matches a row id.
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func parsePage(q url.Values) (store.Cursor, int, error) {
	var before store.Cursor
	if s := q.Get("before"); s != "" {
		c, err := parseCursor(s)
		if err != nil {
			return before, 0, err
		}
		before = c
	}
	limit, err := parseLimit(q)
	return before, limit, err
}

// parseLimit reads a page's size: limit, consolePageSize by default.
func parseLimit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return consolePageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > consoleMaxPageSize {
		return 0, fmt.Errorf("limit: want 1 to %d, got %q", consoleMaxPageSize, s)
	}
	return n, nil
}

func parseEventFilter(q url.Values) (store.EventFilter, error) {
	f := store.EventFilter{
		Status:        strings.TrimSpace(q.Get("status")),
		EventType:     strings.TrimSpace(q.Get("type")),
		Account:       strings.TrimSpace(q.Get("account")),
		StripeEventID: strings.TrimSpace(q.Get("id")),
	}
	switch f.Status {
	case "", store.StatusWaiting, store.StatusFailing, store.StatusDead, store.StatusProcessed:
	default:
		return f, fmt.Errorf("status: want waiting, failing, dead or processed, got %q", f.Status)
	}
	var err error
	if f.From, err = parseConsoleTime("from", q.Get("from")); err != nil {
		return f, err
	}
	if f.To, err = parseConsoleTime("to", q.Get("to")); err != nil {
		return f, err
	}
	return f, nil
}

// parseConsoleTime reads a UTC time as RFC 3339, or without a zone to the
// minute or second (what a datetime-local field sends), or a date.
func parseConsoleTime(name, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: want a time such as 2006-01-02T15:04 (UTC) or RFC 3339, got %q", name, s)
}

// setConsoleHeaders sets the headers of every console response.
func setConsoleHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// render writes page with data and, for the layout, who r's user is
// (Who) and whether they may change things (MayChange).
func (c *Console) render(w http.ResponseWriter, r *http.Request, page string, data map[string]any) {
	id, _ := access.FromContext(r.Context())
	data["Who"], data["MayChange"] = id, id.MayChange()
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		c.logger.Error("console page", "page", page, "err", err)
		c.fail(w, http.StatusInternalServerError, "the page could not be rendered")
		return
	}
	setConsoleHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func (c *Console) fail(w http.ResponseWriter, status int, msg string) {
	setConsoleHeaders(w)
	http.Error(w, msg, status)
}

func (c *Console) serverError(w http.ResponseWriter, r *http.Request, err error) {
	c.logger.Error("console query", "path", r.URL.Path, "err", err)
	c.fail(w, http.StatusInternalServerError, "the database could not be read")
}

// prettyJSON indents a JSON document; one that does not parse is shown as stored.
func prettyJSON(doc []byte) string {
	if len(doc) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, doc, "", "  "); err != nil {
		return string(doc)
	}
	return buf.String()
}

// formatTime shows a time in UTC, or a dash for none.
func formatTime(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return "—"
		}
		t = *x
	default:
		return fmt.Sprint(v)
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// shortError is the first line of an error, at most 120 bytes.
func shortError(s *string) string {
	if s == nil {
		return ""
	}
	line, _, _ := strings.Cut(*s, "\n")
	if len(line) > 120 {
		line = line[:120] + "…"
	}
	return line
}
