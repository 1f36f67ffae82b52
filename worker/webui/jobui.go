package webui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gocraft/work"
	"github.com/gocraft/work/webui"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/worker/internal/access"
)

// jobChange is a changing route of the job UI and the action it is
// recorded as.
type jobChange struct {
	pattern, action string
	oneJob          bool // the path names one dead job: {died_at}/{job_id}
}

// jobChanges are every changing route of gocraft/work v0.5.1's web UI
// (its webui.go; TestJobUIRoutesAreKnown holds this list to it).
var jobChanges = []jobChange{
	{"POST /retry_dead_job/{died_at}/{job_id}", access.ActionRetryDeadJob, true},
	{"POST /delete_dead_job/{died_at}/{job_id}", access.ActionDeleteDeadJob, true},
	{"POST /retry_all_dead_jobs", access.ActionRetryAllDeadJobs, false},
	{"POST /delete_all_dead_jobs", access.ActionDeleteAllDeadJobs, false},
}

// ChangeRoutes are the job UI's changing routes ("POST /retry_all_dead_jobs"),
// for the tests that hold every route of the web UI to its role.
func ChangeRoutes() []string {
	out := make([]string, len(jobChanges))
	for i, c := range jobChanges {
		out[i] = c.pattern
	}
	return out
}

// viewerStyle hides the job UI's buttons and check boxes (retry and
// delete) from a viewer, and says why.
const viewerStyle = `<style>#app button,#app input[type=checkbox]{display:none!important}` +
	`body::before{content:"Read only: you are signed in as a viewer; retrying and deleting jobs is for operators.";` +
	`display:block;padding:.5em 1em;background:#fff8e1;border-bottom:1px solid #e0c060;font:14px system-ui,sans-serif}</style>`

// jobUI is the proxy to gocraft/work's web UI and what it needs to
// describe that UI's changes.
type jobUI struct {
	proxy     *httputil.ReverseProxy
	pool      *redis.Pool
	namespace string
}

// JobUI starts the gocraft/work web UI of namespace on a free loopback
// port and returns a proxy to it (the login header removed on the way),
// which describes each of the UI's changes for the audit trail
// (access.ChangeOf) and marks its page read-only for viewers, and the
// func that stops it.
func JobUI(namespace string, pool *redis.Pool, logger *slog.Logger) (http.Handler, func(), error) {
	inner, err := freeLoopbackAddr()
	if err != nil {
		return nil, nil, err
	}
	ui := webui.NewServer(namespace, pool, inner)
	ui.Start()
	target := &url.URL{Scheme: "http", Host: inner}
	j := &jobUI{pool: pool, namespace: namespace, proxy: &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Header.Del("Authorization")
		},
		ModifyResponse: markPage,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}}
	mux := http.NewServeMux()
	for _, c := range jobChanges {
		mux.HandleFunc(c.pattern, j.change(c))
	}
	mux.Handle("/", j.proxy)
	return mux, ui.Stop, nil
}

// change describes c's request for the audit trail, then proxies it. The
// job is looked up before: a retry or delete removes it from the dead set.
func (j *jobUI) change(c jobChange) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ch := access.ChangeOf(r)
		ch.Action = c.action
		if c.oneJob {
			diedAt, jobID := r.PathValue("died_at"), r.PathValue("job_id")
			ch.JobIDs, ch.Detail = []string{jobID}, "died_at "+diedAt
			if ev := j.deadJobEvent(r.Context(), diedAt, jobID); ev != "" {
				ch.StripeEventIDs = []string{ev}
			}
		} else if n, err := j.deadJobs(r.Context()); err == nil {
			ch.Detail = fmt.Sprintf("dead jobs: %d", n)
		}
		j.proxy.ServeHTTP(w, r)
	}
}

// deadJobEvent is the event id of dead job jobID, dead since diedAt
// (Unix seconds), or "" when it is not found.
func (j *jobUI) deadJobEvent(ctx context.Context, diedAt, jobID string) string {
	if _, err := strconv.ParseInt(diedAt, 10, 64); err != nil {
		return ""
	}
	raws, err := withRedis(ctx, j.pool, func(ctx context.Context, conn redis.Conn) ([][]byte, error) {
		return redis.ByteSlices(redis.DoContext(conn, ctx, "ZRANGEBYSCORE", queue.DeadKey(j.namespace), diedAt, diedAt))
	})
	if err != nil {
		return ""
	}
	for _, raw := range raws {
		var job work.Job
		if json.Unmarshal(raw, &job) == nil && job.ID == jobID {
			return job.ArgString("event_id")
		}
	}
	return ""
}

// deadJobs is the size of the dead set.
func (j *jobUI) deadJobs(ctx context.Context) (int64, error) {
	return withRedis(ctx, j.pool, func(ctx context.Context, conn redis.Conn) (int64, error) {
		return redis.Int64(redis.DoContext(conn, ctx, "ZCARD", queue.DeadKey(j.namespace)))
	})
}

// withRedis runs do on a connection of pool, within 2 s.
func withRedis[T any](ctx context.Context, pool *redis.Pool, do func(context.Context, redis.Conn) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pool.GetContext(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer conn.Close()
	return do(ctx, conn)
}

// markPage keeps the job UI's page (GET /, whose HTML differs by role)
// out of caches, and adds viewerStyle to a viewer's.
func markPage(resp *http.Response) error {
	req := resp.Request
	if req.URL.Path != "/" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		return nil
	}
	resp.Header.Set("Cache-Control", "no-store")
	if id, _ := access.FromContext(req.Context()); id.MayChange() {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if i := bytes.Index(body, []byte("</head>")); i >= 0 {
		body = append(body[:i:i], append([]byte(viewerStyle), body[i:]...)...)
	} else {
		body = append([]byte(viewerStyle), body...)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("webui: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
