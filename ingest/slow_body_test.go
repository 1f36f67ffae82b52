package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

const (
	// slowBodyConns is how many connections one wave holds open.
	slowBodyConns = 500
	// slowBodyClaim is the Content-Length each of them declares.
	slowBodyClaim = 1048000
	// memoryHeadroom is how far above its resting heap and RSS the ingest
	// may go while a wave is held.
	memoryHeadroom = 32 << 20
)

// Connections that send headers declaring a large body, a well-formed but
// wrong Stripe-Signature and one byte of body, then nothing, must cost the
// ingest memory by the bytes they sent, not by the length they claim: two
// waves of them, one after the other, leave its Go heap and its RSS under
// their resting values plus memoryHeadroom, and valid deliveries are still
// stored within their normal latency meanwhile. Both the heap and RSS are
// measured: pages the kernel hands to Go are not resident until touched, so
// RSS alone can hide what the first wave allocated.
//
// Not parallel: it measures another process's memory and latency, which the
// package's other tests would disturb.
func TestSlowBodiesDoNotExhaustMemory(t *testing.T) {
	raiseOpenFileLimit(t, 2*slowBodyConns+512)
	bin := t.TempDir()
	if err := testenv.Build(bin, "stripe-webhooks/ingest"); err != nil {
		t.Fatal(err)
	}
	redisAddr := testenv.RedisAddr()
	host, rport := testenv.RedisHostPort(t, redisAddr)
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	vars := map[string]string{
		"DATABASE_URL":          testenv.Database(t, ""),
		"REDIS_HOST":            host,
		"REDIS_PORT":            strconv.Itoa(rport),
		"WORK_NAMESPACE":        testenv.Namespace(t, redisAddr),
		"STRIPE_WEBHOOK_SECRET": testSecret,
		"PORT":                  strconv.Itoa(port),
		// Longer than the test: the bound must come from what is
		// allocated, not from bodies being cut.
		"WEBHOOK_BODY_TIMEOUT": "5m",
	}
	p := testenv.StartProcess(t, filepath.Join(bin, "ingest"), nil, testenv.Environ(vars), "http://"+addr, "/healthz")
	client := &http.Client{Timeout: 10 * time.Second}

	// Warm up, and measure the normal latency of a delivery.
	var baseline time.Duration
	for range 20 {
		baseline = max(baseline, deliverSigned(t, client, p.Base))
	}
	bound := min(2*time.Second, max(500*time.Millisecond, 10*baseline))
	rest := sampleIngest(t, p)
	t.Logf("at rest: heap in use %s, RSS %s, %d goroutines; slowest of 20 deliveries %s (bound while held %s)",
		mib(rest.heap), mib(rest.rss), rest.goroutines, baseline.Round(time.Microsecond), bound)

	for wave := 1; wave <= 2; wave++ {
		rejectedBefore := sampleIngest(t, p).rejected
		conns := holdSlowBodies(t, addr, slowBodyConns)
		// One goroutine serves each connection; a few of the resting ones
		// come and go.
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("wave %d: the ingest to serve %d held connections", wave, slowBodyConns), func() bool {
			return sampleIngest(t, p).goroutines >= rest.goroutines+slowBodyConns-10
		})
		peak := sampleIngest(t, p)
		var slowest time.Duration
		for range 5 {
			took := deliverSigned(t, client, p.Base)
			slowest = max(slowest, took)
			if took > bound {
				t.Errorf("wave %d: a valid delivery took %s while the connections were held, over %s (10 × the slowest at rest, at least 500ms, at most 2s)",
					wave, took.Round(time.Millisecond), bound)
			}
			peak = peak.max(sampleIngest(t, p))
		}
		held := sampleIngest(t, p)
		peak = peak.max(held)
		if err := stillWaiting(conns); err != nil || held.rejected != rejectedBefore {
			t.Fatalf("wave %d: the connections were not all still waiting when measured (%v; %v rejections, %v before)",
				wave, err, held.rejected, rejectedBefore)
		}
		t.Logf("wave %d of %d held connections: peak heap in use %s (+%s), peak RSS %s (+%s); slowest valid delivery %s",
			wave, slowBodyConns, mib(peak.heap), mib(peak.heap-rest.heap), mib(peak.rss), mib(peak.rss-rest.rss), slowest.Round(time.Microsecond))
		if peak.heap > rest.heap+memoryHeadroom {
			t.Errorf("wave %d: Go heap in use reached %s, over %s at rest + %s", wave, mib(peak.heap), mib(rest.heap), mib(memoryHeadroom))
		}
		if peak.rss > rest.rss+memoryHeadroom {
			t.Errorf("wave %d: RSS reached %s, over %s at rest + %s", wave, mib(peak.rss), mib(rest.rss), mib(memoryHeadroom))
		}

		for _, c := range conns {
			_ = c.Close()
		}
		// Each closed connection ends as one rejection (unreadable_body,
		// or rate_limited past the per-address budget).
		testenv.Eventually(t, 30*time.Second, fmt.Sprintf("wave %d: the ingest to answer the closed connections", wave), func() bool {
			return sampleIngest(t, p).rejected == rejectedBefore+slowBodyConns
		})
	}
	if strings.Contains(p.Logs.String(), testSecret) {
		t.Error("the logs contain the endpoint secret")
	}
}

// A request without a well-formed Stripe-Signature is answered 400 at once,
// without waiting for its body, and its connection is closed.
func TestRequestWithoutSignatureIsRefusedBeforeItsBody(t *testing.T) {
	t.Parallel()
	// A body timeout far beyond the wait below: an answer within it came
	// before any of the body was waited for.
	in := start(t, options{env: map[string]string{"WEBHOOK_BODY_TIMEOUT": "60s", "WEBHOOK_REJECT_RATE_LIMIT": "0"}})
	addr := strings.TrimPrefix(in.base, "http://")
	v1 := randomHex(32)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	tests := []struct {
		name      string
		signature string
		reason    string
	}{
		{"absent", "", "no_signature"},
		{"timestamp not a number", "t=abc,v1=" + v1, "bad_signature"},
		{"no timestamp", "v1=" + v1, "bad_signature"},
		{"no v1", "t=" + now + ",v0=" + v1, "bad_signature"},
		{"v1 too short", "t=" + now + ",v1=" + v1[:62], "bad_signature"},
		{"v1 not hex", "t=" + now + ",v1=" + strings.Repeat("zz", 32), "bad_signature"},
		{"element without =", "t=" + now + ",v1=" + v1 + ",junk", "bad_signature"},
	}
	// Over and under the length net/http would drain before answering.
	for _, length := range []int{slowBodyClaim, 5000} {
		for _, tt := range tests {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(requestHead(addr, length, tt.signature)); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			_ = conn.SetReadDeadline(began.Add(5 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s, Content-Length %d: no answer before the body: %v", tt.name, length, err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || body["reason"] != tt.reason || body["error"] == nil {
				t.Errorf("%s, Content-Length %d: %d %v, want 400 with reason %s", tt.name, length, resp.StatusCode, body, tt.reason)
			}
			if err := readClosed(br); err != nil {
				t.Errorf("%s, Content-Length %d: %v", tt.name, length, err)
			}
			conn.Close()
		}
	}
	if n := in.rows(); n != 0 {
		t.Errorf("rows = %d, want 0", n)
	}
}

// A body that does not arrive within WEBHOOK_BODY_TIMEOUT of the handler
// starting to read it is answered 408 and its connection closed, whether it
// stalls or trickles in.
func TestSlowBodyIsCutAfterBodyTimeout(t *testing.T) {
	t.Parallel()
	const bodyTimeout = time.Second
	in := start(t, options{env: map[string]string{"WEBHOOK_BODY_TIMEOUT": bodyTimeout.String()}})
	addr := strings.TrimPrefix(in.base, "http://")
	payload, sig := signed(t, "account.updated")

	for _, trickle := range []bool{false, true} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if _, err := conn.Write(append(requestHead(addr, len(payload), sig), payload[:len(payload)/2]...)); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		if trickle {
			// One more byte every 50 ms: the whole body would take minutes.
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for i := len(payload) / 2; i < len(payload); i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := conn.Write(payload[i : i+1]); err != nil {
						return
					}
				}
			}()
		}
		_ = conn.SetReadDeadline(began.Add(10 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		took := time.Since(began)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("trickle %v: no answer: %v", trickle, err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || body["reason"] != "body_timeout" {
			t.Errorf("trickle %v: %d %v, want 408 with reason body_timeout", trickle, resp.StatusCode, body)
		}
		// Well before the server's ReadTimeout (5 s for headers + the body timeout).
		if took < bodyTimeout-100*time.Millisecond || took > bodyTimeout+3*time.Second {
			t.Errorf("trickle %v: answered after %s, want about %s", trickle, took.Round(time.Millisecond), bodyTimeout)
		}
		if err := readClosed(br); err != nil {
			t.Errorf("trickle %v: %v", trickle, err)
		}
		conn.Close()
	}

	// A body that arrives in time is stored.
	if r := in.post(payload, stripefixture.Sign(payload, testSecret, time.Now())); r.status != http.StatusOK {
		t.Errorf("delivery after the slow ones: %d %v", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
}

// The signature check refuses exactly the headers the verifier refuses:
// nothing Stripe could have signed is turned away unread.
func TestSignatureCheckAgreesWithVerifier(t *testing.T) {
	t.Parallel()
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	header := stripefixture.Sign(payload, testSecret, now)
	_, v1, ok := strings.Cut(header, "v1=")
	if !ok || len(v1) != 64 {
		t.Fatalf("fixture header has no 64-digit v1 element")
	}
	other := randomHex(32)
	tests := []struct {
		header string
		valid  bool
	}{
		{"t=" + ts + ",v1=" + v1, true},
		{"v1=" + v1 + ",t=" + ts, true},
		{"t=" + ts + ",v1=" + other + ",v1=" + v1, true},
		{"t=" + ts + ",v1=" + strings.ToUpper(v1), true},
		{"t=" + ts + ",v1=not-hex,v0=" + other + ",scheme=x,v1=" + v1, true},
		{"t=+" + ts + ",v1=" + v1, true},
		{"t=0" + ts + ",v1=" + v1, true},
		{"=x,t=" + ts + ",v1=" + v1, true},
		{"", false},
		{"t=" + ts, false},
		{"v1=" + v1, false},
		{"t=" + ts + ",v1=" + v1[:62], false},
		{"t=" + ts + ",v1=" + v1 + "00", false},
		{"t=x" + ts + ",v1=" + v1, false},
		{"t=" + ts + ",v1=" + v1 + ",", false},
		{"t=" + ts + ";v1=" + v1, false},
		{"t=" + ts + ",v1=" + v1 + "=", false},
		{"t=" + ts + ", v1=" + v1, false},
	}
	verifier := stripeevent.NewVerifier([]string{testSecret})
	for i, tt := range tests {
		_, verr := verifier.Verify(payload, tt.header)
		rej := checkSignatureHeader(tt.header)
		if (verr == nil) != tt.valid {
			t.Fatalf("case %d: verifier error %v, want valid %v", i, verr, tt.valid)
		}
		if tt.valid && rej != nil {
			t.Errorf("case %d: a header the verifier accepts is refused: %s", i, rej.Reason)
		}
		if !tt.valid && rej == nil {
			t.Errorf("case %d: a malformed header passes the check", i)
		}
	}
}

// readBody allocates by the bytes that arrive, not by the declared length,
// and reads a delivery of known length into one buffer of that length.
//
// Not parallel: it counts the process's allocations.
func TestReadBodyAllocatesByBytesReceived(t *testing.T) {
	const sent, runs = 100, 50
	requests := make([]*http.Request, runs)
	recorders := make([]*httptest.ResponseRecorder, runs)
	for i := range requests {
		requests[i] = httptest.NewRequest(http.MethodPost, WebhookPath, io.MultiReader(bytes.NewReader(make([]byte, sent)), errReader{io.ErrUnexpectedEOF}))
		requests[i].ContentLength = slowBodyClaim
		recorders[i] = httptest.NewRecorder()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range runs {
		if _, err := readBody(recorders[i], requests[i], 1<<20, time.Minute); err == nil {
			t.Fatal("readBody of a cut body: no error")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 2*bodyChunk {
		t.Errorf("readBody allocated %d bytes for a body cut after %d of its declared %d, want at most %d", per, sent, slowBodyClaim, 2*bodyChunk)
	}

	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	got, err := readBody(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, WebhookPath, bytes.NewReader(payload)), 1<<20, time.Minute)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("readBody = %d bytes, %v; want the %d-byte payload", len(got), err, len(payload))
	}
	if cap(got) != len(payload) {
		t.Errorf("buffer of a %d-byte body has capacity %d, want exactly its length", len(payload), cap(got))
	}

	// Without a declared length, the buffer grows with the body.
	chunked := httptest.NewRequest(http.MethodPost, WebhookPath, io.MultiReader(bytes.NewReader(payload)))
	chunked.ContentLength = -1
	if got, err := readBody(httptest.NewRecorder(), chunked, 1<<20, time.Minute); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("readBody without a length = %d bytes, %v; want the %d-byte payload", len(got), err, len(payload))
	}
}

// readClosed reads what follows an answer on its connection and returns an
// error unless the server has closed it (a reset counts: the server closed
// with bytes of the body still unread).
func readClosed(r *bufio.Reader) error {
	_, err := r.ReadByte()
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return fmt.Errorf("connection not closed after the answer (read: %v)", err)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// ingestSample is what the ingest reports of itself at one moment.
type ingestSample struct {
	heap, rss  int64 // bytes: Go heap in use, resident set
	goroutines int
	rejected   float64 // deliveries rejected so far, all reasons
}

func (s ingestSample) max(o ingestSample) ingestSample {
	return ingestSample{heap: max(s.heap, o.heap), rss: max(s.rss, o.rss), goroutines: max(s.goroutines, o.goroutines), rejected: max(s.rejected, o.rejected)}
}

// sampleIngest reads the ingest's /metrics and its process's VmRSS.
func sampleIngest(t *testing.T, p *testenv.Process) ingestSample {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s ingestSample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(series, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case series == "go_memstats_heap_inuse_bytes":
			s.heap = int64(v)
		case series == "go_goroutines":
			s.goroutines = int(v)
		case strings.HasPrefix(series, `stripe_webhooks_deliveries_total{outcome="rejected"`):
			s.rejected += v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if s.heap == 0 || s.goroutines == 0 {
		t.Fatal("/metrics lacks go_memstats_heap_inuse_bytes or go_goroutines")
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			s.rss = kb << 10
		}
	}
	if s.rss == 0 {
		t.Fatal("no VmRSS in /proc/<pid>/status")
	}
	return s
}

// holdSlowBodies opens n connections to addr, each sending the headers of a
// delivery that declares slowBodyClaim bytes with a well-formed but wrong
// signature, and one byte of it. The test's cleanup closes them.
func holdSlowBodies(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs <- err
					continue
				}
				conns[i] = c
				sig := "t=" + strconv.FormatInt(time.Now().Unix(), 10) + ",v1=" + randomHex(32)
				if _, err := c.Write(append(requestHead(addr, slowBodyClaim, sig), '{')); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	if err := <-errs; err != nil {
		t.Fatalf("opening the held connections: %v", err)
	}
	return conns
}

// stillWaiting returns an error unless every connection is still open and
// unanswered: a read finds nothing within 100 ms.
func stillWaiting(conns []net.Conn) error {
	errs := make(chan error, len(conns))
	deadline := time.Now().Add(100 * time.Millisecond)
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(deadline)
			var b [1]byte
			_, err := c.Read(b[:])
			_ = c.SetReadDeadline(time.Time{})
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			} else {
				err = fmt.Errorf("a held connection was answered or closed (read: %v)", err)
			}
			errs <- err
		}()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// requestHead is the head of a delivery to the webhook route declaring
// length bytes of body, with signature as its Stripe-Signature (none when
// empty).
func requestHead(addr string, length int, signature string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", WebhookPath, addr, length)
	if signature != "" {
		fmt.Fprintf(&b, "Stripe-Signature: %s\r\n", signature)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// deliverSigned posts one signed event to the ingest at base, requires 200,
// and returns how long the answer took.
func deliverSigned(t *testing.T, client *http.Client, base string) time.Duration {
	t.Helper()
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	req, err := http.NewRequest(http.MethodPost, base+WebhookPath, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, testSecret, time.Now()))
	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("valid delivery: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid delivery answered %d, want 200", resp.StatusCode)
	}
	return took
}

// raiseOpenFileLimit raises the test process's soft limit on open files to
// at least n, if its hard limit allows.
func raiseOpenFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("open-file limit %d (hard), the test needs %d", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
