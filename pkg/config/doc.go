// Package config reads the services' settings from the environment.
//
// Each command loads only the struct it needs (the README's Configuration
// table names which command uses which variable: STRIPE_WEBHOOK_SECRET is
// the ingest's alone, `migrate` needs only DATABASE_URL, `webui` only
// Redis). A missing or malformed variable is reported as an *Error naming
// it; the binaries print that one line and exit with code 2 (ExitCode).
//
// The files follow the sections of the configuration: config.go loads a
// struct and gathers the problems, files.go reads <NAME>_FILE, and
// database.go, redis.go, stripe.go (API, livemode, allowlist), log.go,
// ingest.go, worker.go (the pool and its commands) and webui.go hold each
// section's struct, its defaults and its checks.
package config
