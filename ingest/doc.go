// Command ingest receives Stripe webhook deliveries: it verifies each
// signature, stores the event in Postgres once, queues it for the worker and
// answers Stripe. Its HTTP contract is README.md's "HTTP (ingest)";
// routes.go maps every route, and webhook.go reads top to bottom as a
// delivery is handled: signature header, limited raw body, verify, store,
// queue, answer.
//
// # What a delivery may cost before it proves anything
//
// A request whose Stripe-Signature header is missing or could never verify
// (it needs a t= timestamp and a v1= of 64 hex digits) gets 400 before its
// body is read, and its connection is closed; so does a declared
// Content-Length over WEBHOOK_MAX_BODY_BYTES (413) and, with
// STRIPE_IP_ALLOWLIST set, a client address outside the list (403). A
// Content-Length is a claim, not a fact: the body's buffer starts at 4 KiB
// (or the declared length, if smaller) and doubles as bytes arrive, so
// memory follows what the sender has sent, and a body that does not arrive
// within WEBHOOK_BODY_TIMEOUT is cut off (408). Each rejection counts
// against its client address's WEBHOOK_REJECT_RATE_LIMIT a minute (then
// 429, with Retry-After); verified deliveries are never limited.
// slow_body_test.go holds 500 slow connections open, twice, and checks that
// the ingest's Go heap and RSS stay within 32 MiB of their values at rest
// while valid deliveries are stored at their normal latency.
//
// The signature is checked by stripe-go (webhook.ValidatePayloadWithTolerance,
// Stripe's 300 s tolerance) on the exact bytes received, each configured
// secret against each v1= signature; gjson then validates the JSON and
// reads id, type and livemode without decoding the rest of the event. An
// api_version other than stripe-go's is accepted.
//
// # Group commit and queueing
//
// Deliveries that arrive while a commit is in flight are stored together by
// the next one: one INSERT … ON CONFLICT DO NOTHING and one commit for up
// to 128 deliveries, with two batches in flight (one gathers while the
// other commits). Under light load a delivery is stored alone at once;
// nothing waits for a batch to fill. A row Postgres refuses fails alone: a
// failed batch is logged once with its cause and counted in
// batch_insert_failures_total, then its deliveries are stored one by one.
// The Inserter's mechanics are pkg/store's (store.Inserter).
//
// The committed batch's jobs, for its new events and its duplicates not yet
// processed, are queued in one pipelined round trip to Redis
// (queue.Enqueuer.EnqueueMany, which also wakes idle workers), waiting at
// most WEBHOOK_ENQUEUE_TIMEOUT, on a goroutine of its own while the next
// batches are stored. Past it, or if Redis refuses, the deliveries are
// answered 200 all the same, logged and counted in enqueue_failures_total,
// and the sweeper queues them. A delivery is answered 200 only after its
// batch's commit, which waits for the WAL flush (and, with synchronous
// replication, for a standby: deploy/README.md). One whose database work
// fails, or takes over 10 s, gets 503 so that Stripe delivers again. The
// work goes on if Stripe hangs up meanwhile, so a committed row is still
// queued.
//
// # Modes, allowlist, secrets
//
// Stripe sends a platform's endpoint the live and the test events of its
// connected accounts, signed with one secret. With STRIPE_LIVEMODE live or
// test, an event of the other mode is verified, stored once (livemode
// column), answered 200 so that Stripe stops sending it, and counted in
// deliveries_by_mode_total{mode,ignored="true"}; the worker marks it
// processed without effect, and replay and reconcile leave it out.
// Changing the setting re-applies and deletes nothing already stored.
//
// STRIPE_IP_ALLOWLIST takes "stripe" (Stripe's published webhook
// addresses: stripe_webhook_ips.txt, embedded in the binary with the date
// it was taken, which the ingest logs at start) and/or IPs and CIDRs, IPv4
// or IPv6. The client address is the one TRUSTED_PROXIES resolves from
// X-Forwarded-For. /healthz, /readyz, /health and /metrics answer anyone.
// STRIPE_IP_ALLOWLIST_FILE takes one entry a line ('#' starts a comment):
// saving Stripe's current https://stripe.com/files/ips/ips_webhooks.txt
// there replaces the embedded list without a new build. A file that lists
// no address (empty, or comments only: a failed download) stops the ingest
// at start (exit 2), since no list would let every address in. The ingest
// reads the file again when it changes (within 2 s) and keeps its last
// good list while the file is unreadable, empty, comments only or
// malformed (logged once per problem; ip_allowlist_file_usable reads 0).
//
// STRIPE_WEBHOOK_SECRET may list several secrets during a roll; each is
// tried. STRIPE_WEBHOOK_SECRET_FILE is read again when it changes (within
// 2 s, following symlinks, so a Kubernetes Secret volume's swap is seen),
// and a file that becomes unreadable or empty leaves the last good secrets
// in use (secret_file_usable reads 0); the procedure is deploy/README.md's
// "Roll the signing secret".
//
// # Traces
//
// With OTEL_EXPORTER_OTLP_ENDPOINT set (package telemetry), each delivery
// is a server span (tracing.go, continuing an incoming traceparent) with the
// event's stripe.event_id, stripe.event_type, stripe.account and
// stripe.livemode, and events for its steps: "signature verified" (or
// refused), "group commit". The batch it joined is the span
// store.insert_batch, linked to each of its deliveries (and a child of the
// first sampled one), holding the INSERT and the enqueue to Redis; each
// delivery's span gets a link back. The event is stored with the
// traceparent of the delivery's span, and its job carries it, so the
// worker's span of the job, queued now or later by the sweeper, joins the
// delivery's trace. Without the variable, the route has no tracing
// handler, no span is made and nothing more is stored or queued.
//
// # Shutdown and logging
//
// On SIGTERM the ingest stops accepting connections, lets in-flight
// requests finish (up to SHUTDOWN_TIMEOUT) and exits 0. Logs are JSON
// lines on stdout at LOG_LEVEL; each delivery's line has stripe_event_id,
// event_type and webhook_id, and each rejection its reason, status and
// client_ip (and, with tracing on, trace_id and span_id). A log line never
// carries a payload, a secret or a signature: a panic is answered 500 and
// logged without the request's headers.
package main
