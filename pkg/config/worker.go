package config

import "time"

// Worker is the configuration of bin/worker (the pool).
type Worker struct {
	Database
	Redis
	Log
	Livemode
	// Concurrency is the number of jobs processed at once per process. Default: 5.
	Concurrency int `env:"WEBHOOK_WORKER_CONCURRENCY" envDefault:"5"`
	// MaxRetries is the number of attempts in all (gocraft/work MaxFails). Default: 5.
	MaxRetries int `env:"WEBHOOK_MAX_RETRIES" envDefault:"5"`
	// RetryBaseDelay is the backoff base: base × 2^(fails-1). Default: 60s.
	RetryBaseDelay time.Duration `env:"WEBHOOK_RETRY_BASE_DELAY" envDefault:"60s"`
	// JobTimeout is the deadline of one job. Default: 30s.
	JobTimeout time.Duration `env:"WEBHOOK_JOB_TIMEOUT" envDefault:"30s"`
	// HTTPPort serves /healthz, /readyz and /metrics. Default: 8081.
	HTTPPort int `env:"WORKER_HTTP_PORT" envDefault:"8081"`
	// SweepInterval is how often the sweeper looks for unqueued events. Default: 30s.
	SweepInterval time.Duration `env:"WEBHOOK_SWEEP_INTERVAL" envDefault:"30s"`
	// SweepAfter is how old an unprocessed event must be before the sweeper enqueues it again. Default: 60s.
	SweepAfter time.Duration `env:"WEBHOOK_SWEEP_AFTER" envDefault:"60s"`
	// Retention is how long processed events are kept; 0 keeps them forever. Default: 720h.
	Retention time.Duration `env:"WEBHOOK_RETENTION" envDefault:"720h"`
	StripeAPI
	// ReconcileInterval is how often one replica reconciles events with
	// Stripe's API, when STRIPE_API_KEY is set. Default: 1h.
	ReconcileInterval time.Duration `env:"STRIPE_RECONCILE_INTERVAL" envDefault:"1h"`
	// ResyncDebounce is how long after a same-second tie that the events
	// could not settle the account is resynced from Stripe's API, when
	// STRIPE_API_KEY is set (so that a burst of such events settles first).
	// Default: 30s.
	ResyncDebounce time.Duration `env:"STRIPE_RESYNC_DEBOUNCE" envDefault:"30s"`
}

// LoadWorker reads the worker pool's configuration from environ.
func LoadWorker(environ []string) (Worker, error) {
	var c Worker
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.services(c.Database, &c.Redis, c.Log, c.Livemode)
	p.positive("WEBHOOK_WORKER_CONCURRENCY", c.Concurrency)
	p.positive("WEBHOOK_MAX_RETRIES", c.MaxRetries)
	p.positiveDuration("WEBHOOK_RETRY_BASE_DELAY", c.RetryBaseDelay)
	p.positiveDuration("WEBHOOK_JOB_TIMEOUT", c.JobTimeout)
	p.port("WORKER_HTTP_PORT", c.HTTPPort)
	p.positiveDuration("WEBHOOK_SWEEP_INTERVAL", c.SweepInterval)
	p.positiveDuration("WEBHOOK_SWEEP_AFTER", c.SweepAfter)
	p.stripeAPI(c.StripeAPI, false)
	p.positiveDuration("STRIPE_RECONCILE_INTERVAL", c.ReconcileInterval)
	p.retention(c.Retention)
	p.positiveDuration("STRIPE_RESYNC_DEBOUNCE", c.ResyncDebounce)
	return c, p.err()
}

// Reconcile is the configuration of `bin/worker reconcile` and `resync`.
type Reconcile struct {
	Database
	Redis
	Log
	Livemode
	StripeAPI
	// Retention is the workers' WEBHOOK_RETENTION: reconcile never reaches
	// back past it, where an event applied and deleted would look missing.
	// 0 keeps events forever. Default: 720h.
	Retention time.Duration `env:"WEBHOOK_RETENTION" envDefault:"720h"`
}

// LoadReconcile reads the configuration of `reconcile` and `resync`, which
// need STRIPE_API_KEY.
func LoadReconcile(environ []string) (Reconcile, error) {
	var c Reconcile
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.services(c.Database, &c.Redis, c.Log, c.Livemode)
	p.stripeAPI(c.StripeAPI, true)
	p.retention(c.Retention)
	return c, p.err()
}

// Admin is the configuration of the commands that need only the database:
// `bin/worker migrate` and `bin/worker replay`.
type Admin struct {
	Database
	Log
	Livemode
}

// LoadAdmin reads the configuration of `migrate` and `replay`.
func LoadAdmin(environ []string) (Admin, error) {
	var c Admin
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.log(c.Log)
	p.livemode(c.Livemode)
	return c, p.err()
}

// MinRetention is the shortest WEBHOOK_RETENTION accepted: Stripe
// redelivers an event for up to three days.
const MinRetention = 72 * time.Hour

func (p *problems) retention(d time.Duration) {
	if d < 0 || (d > 0 && d < MinRetention) {
		p.add("WEBHOOK_RETENTION must be 0 (keep forever) or at least 72h: Stripe redelivers for three days, and a redelivery of a deleted event would be applied again")
	}
}
