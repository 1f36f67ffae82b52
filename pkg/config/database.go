package config

import "net/url"

// Database is the Postgres connection.
type Database struct {
	// URL is the Postgres connection URL.
	// Default: postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable.
	URL string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable"`
}

func (p *problems) database(d Database) {
	u, err := url.Parse(d.URL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// The URL may hold a password: never echo it.
		p.add("DATABASE_URL must be a postgres:// URL such as postgres://user@host:5432/db?sslmode=disable")
	}
}
