package config

import (
	"fmt"
	"strings"
	"time"
)

// Ingest is the configuration of bin/ingest.
type Ingest struct {
	Database
	Redis
	Log
	Livemode
	// WebhookSecrets are the endpoint signing secrets (whsec_…); several during a
	// secret roll, comma-separated (or one a line in STRIPE_WEBHOOK_SECRET_FILE).
	// Required, no default.
	WebhookSecrets []string `env:"STRIPE_WEBHOOK_SECRET" envSeparator:","`
	// WebhookSecretFile is the file the secrets were read from, if any; the
	// ingest reads it again when it changes. Default: none.
	WebhookSecretFile string `env:"STRIPE_WEBHOOK_SECRET_FILE"`
	// IPAllowlist is "stripe" (Stripe's published webhook addresses) or
	// comma-separated IPs and CIDRs; deliveries from other addresses get
	// 403. Default: empty, every address.
	IPAllowlist []string `env:"STRIPE_IP_ALLOWLIST" envSeparator:","`
	// IPAllowlistFile is the file the allowlist was read from, if any; the
	// ingest reads it again when it changes. Default: none.
	IPAllowlistFile string `env:"STRIPE_IP_ALLOWLIST_FILE"`
	// HTTPPort is the HTTP port. Default: 8080.
	HTTPPort int `env:"PORT" envDefault:"8080"`
	// MaxBodyBytes is the largest accepted delivery; larger ones get 413. Default: 1048576.
	MaxBodyBytes int64 `env:"WEBHOOK_MAX_BODY_BYTES" envDefault:"1048576"`
	// RejectRateLimit is how many requests failing verification one client
	// address may make per minute; 0 turns the limit off. Default: 100.
	RejectRateLimit int `env:"WEBHOOK_REJECT_RATE_LIMIT" envDefault:"100"`
	// TrustedProxies are the proxies (IPs or CIDRs, comma-separated) whose
	// X-Forwarded-For is believed when finding the client address. Default: none.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
	// ShutdownTimeout bounds how long in-flight requests may take after SIGTERM. Default: 25s.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`
	// EnqueueTimeout bounds how long a committed batch waits for Redis to
	// take its jobs before its deliveries are answered anyway (the sweeper
	// queues them later). Default: 250ms.
	EnqueueTimeout time.Duration `env:"WEBHOOK_ENQUEUE_TIMEOUT" envDefault:"250ms"`
	// BodyTimeout bounds how long a delivery's body may take to arrive once
	// its headers have. Default: 10s.
	BodyTimeout time.Duration `env:"WEBHOOK_BODY_TIMEOUT" envDefault:"10s"`
}

// LoadIngest reads the ingest's configuration from environ (KEY=value pairs).
func LoadIngest(environ []string) (Ingest, error) {
	var c Ingest
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.services(c.Database, &c.Redis, c.Log, c.Livemode)
	p.webhookSecrets(&c.WebhookSecrets)
	p.ipAllowlist(c.IPAllowlist)
	p.port("PORT", c.HTTPPort)
	p.positive("WEBHOOK_MAX_BODY_BYTES", int(min(c.MaxBodyBytes, 1<<31)))
	p.nonNegative("WEBHOOK_REJECT_RATE_LIMIT", c.RejectRateLimit)
	p.positiveDuration("SHUTDOWN_TIMEOUT", c.ShutdownTimeout)
	p.positiveDuration("WEBHOOK_ENQUEUE_TIMEOUT", c.EnqueueTimeout)
	if c.EnqueueTimeout > 5*time.Second {
		p.add(fmt.Sprintf("WEBHOOK_ENQUEUE_TIMEOUT must be at most 5s (every delivery of a batch waits for it), got %s", c.EnqueueTimeout))
	}
	p.positiveDuration("WEBHOOK_BODY_TIMEOUT", c.BodyTimeout)
	return c, p.err()
}

// webhookSecrets drops the blank secrets of the list, and requires one.
func (p *problems) webhookSecrets(list *[]string) {
	secrets := (*list)[:0]
	for _, s := range *list {
		if s = strings.TrimSpace(s); s != "" {
			secrets = append(secrets, s)
		}
	}
	*list = secrets
	if len(secrets) == 0 {
		p.add("STRIPE_WEBHOOK_SECRET is required (the endpoint's whsec_… signing secret; comma-separate several during a roll)")
	}
}
