// Package loadgen drives a closed-loop load of signed Stripe deliveries at
// a webhook route and reports throughput, status counts and latency.
package loadgen

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"stripe-webhooks/pkg/stripefixture"
)

// Options shape one load run.
type Options struct {
	URL         string
	Secret      string
	Concurrency int
	Duration    time.Duration
	Requests    int     // 0: run for Duration
	Duplicates  float64 // share of requests repeating an already-sent event
	EventType   string
	TLS         *tls.Config // for an https URL; nil uses the system's roots
}

// Report is what one run measured.
type Report struct {
	Concurrency int            `json:"concurrency"`
	Requests    int            `json:"requests"`
	Errors      int            `json:"errors"`
	Seconds     float64        `json:"seconds"`
	PerSecond   float64        `json:"per_second"`
	Status      map[string]int `json:"status"`
	P50Ms       float64        `json:"p50_ms"`
	P90Ms       float64        `json:"p90_ms"`
	P99Ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	PayloadSize int            `json:"payload_bytes"`
}

func (r Report) String() string {
	var codes []string
	for c, n := range r.Status {
		codes = append(codes, fmt.Sprintf("%s: %d", c, n))
	}
	sort.Strings(codes)
	return fmt.Sprintf("%d requests (%d-byte events) in %.2fs with %d clients: %.0f/s\nstatus %s; transport errors: %d\nlatency p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n",
		r.Requests, r.PayloadSize, r.Seconds, r.Concurrency, r.PerSecond, strings.Join(codes, ", "), r.Errors, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
}

// idPlaceholder is replaced, in place and at equal length, by each request's event id.
const idPlaceholder = "evt_LOADGENxxxxxxxxxxxxxxxxxxxx"

// Run sends the load and reports.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.Concurrency <= 0 {
		return Report{}, errors.New("concurrency must be positive")
	}
	target, err := parseTarget(o.URL, o.TLS)
	if err != nil {
		return Report{}, err
	}
	template, err := stripefixture.Event(stripefixture.Options{Type: o.EventType, ID: idPlaceholder})
	if err != nil {
		return Report{}, err
	}
	at := bytes.Index(template, []byte(idPlaceholder))

	if o.Requests <= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	var (
		issued  atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		status  = map[string]int{}
		errs    int
		wg      sync.WaitGroup
		started = time.Now()
	)
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(started.UnixNano()), uint64(w)))
			var sent []string // this client's ids, for duplicates
			local := make([]time.Duration, 0, 1024)
			localStatus := map[int]int{}
			localErrs := 0
			payload := slices.Clone(template)
			c := &client{target: target}
			defer c.close()
			for ctx.Err() == nil {
				if o.Requests > 0 && issued.Add(1) > int64(o.Requests) {
					break
				}
				id := fmt.Sprintf("evt_lg%02d%0*d", w%100, len(idPlaceholder)-8, rng.Uint64()%1e18)
				if len(sent) > 0 && rng.Float64() < o.Duplicates {
					id = sent[rng.IntN(len(sent))]
				} else if len(sent) < 10000 {
					sent = append(sent, id)
				}
				copy(payload[at:], id)
				t0 := time.Now()
				code, err := c.post(ctx, payload, stripefixture.Sign(payload, o.Secret, t0))
				if err != nil {
					localErrs++
					continue
				}
				local = append(local, time.Since(t0))
				localStatus[code]++
			}
			mu.Lock()
			lat = append(lat, local...)
			for k, v := range localStatus {
				status[strconv.Itoa(k)] += v
			}
			errs += localErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	return Summarise(o.Concurrency, lat, status, errs, time.Since(started), len(template)), nil
}

// target is where the deliveries go.
type target struct {
	addr, host, path string
	tls              *tls.Config // nil for http
}

func parseTarget(raw string, tlsConfig *tls.Config) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("url: %w", err)
	}
	t := target{host: u.Host, path: u.RequestURI()}
	switch u.Scheme {
	case "http":
		t.addr = net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "80"))
	case "https":
		t.addr = net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), "443"))
		t.tls = tlsConfig
		if t.tls == nil {
			t.tls = &tls.Config{}
		}
		t.tls = t.tls.Clone()
		t.tls.ServerName = cmp.Or(t.tls.ServerName, u.Hostname())
	default:
		return target{}, fmt.Errorf("url: %q is not an http or https address", raw)
	}
	return t, nil
}

// client is one keep-alive HTTP/1.1 connection writing each request with one
// write and reading the answer with net/http's parser. It is far cheaper per
// request than net/http's Transport, so the load generator takes less of
// the CPU it shares with what it measures.
type client struct {
	target target
	conn   net.Conn
	br     *bufio.Reader
	buf    []byte
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// post sends one delivery and returns the answer's status code. A broken
// connection is closed and redialled on the next request.
func (c *client) post(ctx context.Context, payload []byte, signature string) (int, error) {
	if c.conn == nil {
		d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", c.target.addr)
		if err != nil {
			return 0, err
		}
		if c.target.tls != nil {
			tc := tls.Client(conn, c.target.tls)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return 0, err
			}
			conn = tc
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	c.buf = append(c.buf[:0], "POST "...)
	c.buf = append(c.buf, c.target.path...)
	c.buf = append(c.buf, " HTTP/1.1\r\nHost: "...)
	c.buf = append(c.buf, c.target.host...)
	c.buf = append(c.buf, "\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\nContent-Type: application/json; charset=utf-8\r\nStripe-Signature: "...)
	c.buf = append(c.buf, signature...)
	c.buf = append(c.buf, "\r\nContent-Length: "...)
	c.buf = strconv.AppendInt(c.buf, int64(len(payload)), 10)
	c.buf = append(c.buf, "\r\n\r\n"...)
	c.buf = append(c.buf, payload...)
	if _, err := c.conn.Write(c.buf); err != nil {
		c.close()
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode, err
}

// Summarise turns latencies and counts into a Report.
func Summarise(concurrency int, lat []time.Duration, status map[string]int, errs int, elapsed time.Duration, payloadSize int) Report {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p*float64(len(lat))+0.5) - 1
		i = max(0, min(i, len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	return Report{
		Concurrency: concurrency,
		Requests:    len(lat),
		Errors:      errs,
		Seconds:     elapsed.Seconds(),
		PerSecond:   float64(len(lat)) / elapsed.Seconds(),
		Status:      status,
		P50Ms:       pct(0.50),
		P90Ms:       pct(0.90),
		P99Ms:       pct(0.99),
		MaxMs:       pct(1),
		PayloadSize: payloadSize,
	}
}
