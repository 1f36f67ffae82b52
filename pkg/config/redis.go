package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Redis is the Redis connection and the gocraft/work namespace in it.
type Redis struct {
	// Host of the Redis server. Default: 127.0.0.1.
	Host string `env:"REDIS_HOST" envDefault:"127.0.0.1"`
	// Port of the Redis server. Default: 6379.
	Port int `env:"REDIS_PORT" envDefault:"6379"`
	// Password for AUTH; empty sends none. Default: empty.
	Password string `env:"REDIS_PASSWORD"`
	// DB is the Redis database number. Default: 0.
	DB int `env:"REDIS_DB" envDefault:"0"`
	// Namespace is the gocraft/work key namespace. Default: stripe-webhooks.
	Namespace string `env:"WORK_NAMESPACE" envDefault:"stripe-webhooks"`
	// SentinelAddrs are Redis Sentinel addresses (host:port, comma-separated);
	// when set, the master is found through them and REDIS_HOST and
	// REDIS_PORT are ignored. Default: none.
	SentinelAddrs []string `env:"REDIS_SENTINEL_ADDRS" envSeparator:","`
	// SentinelMaster is the name the sentinels monitor the master under;
	// required with REDIS_SENTINEL_ADDRS. Default: none.
	SentinelMaster string `env:"REDIS_SENTINEL_MASTER"`
	// SentinelPassword is the sentinels' own password (requirepass of the
	// sentinels); REDIS_PASSWORD still applies to the master. Default: none.
	SentinelPassword string `env:"REDIS_SENTINEL_PASSWORD"`
}

// UsesSentinel reports whether the master is found through Sentinel.
func (r Redis) UsesSentinel() bool { return len(r.SentinelAddrs) > 0 }

// Addr is host:port of the Redis server named by REDIS_HOST and REDIS_PORT
// (unused with Sentinel).
func (r Redis) Addr() string { return fmt.Sprintf("%s:%d", r.Host, r.Port) }

// redis checks r, dropping the empty elements of REDIS_SENTINEL_ADDRS.
func (p *problems) redis(r *Redis) {
	addrs := r.SentinelAddrs[:0]
	for _, a := range r.SentinelAddrs {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	r.SentinelAddrs = addrs
	switch {
	case r.UsesSentinel():
		for _, a := range addrs {
			if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port) {
				p.add(fmt.Sprintf("REDIS_SENTINEL_ADDRS must be host:port addresses, comma-separated, got %q", a))
			}
		}
		if strings.TrimSpace(r.SentinelMaster) == "" {
			p.add("REDIS_SENTINEL_MASTER is required with REDIS_SENTINEL_ADDRS (the name the sentinels monitor, such as mymaster)")
		}
	default:
		if r.SentinelMaster != "" {
			p.add("REDIS_SENTINEL_MASTER is set without REDIS_SENTINEL_ADDRS")
		}
		if r.Host == "" {
			p.add("REDIS_HOST must not be empty")
		}
		if r.Port <= 0 || r.Port > 65535 {
			p.add(fmt.Sprintf("REDIS_PORT must be a TCP port (1-65535), got %d", r.Port))
		}
	}
	p.nonNegative("REDIS_DB", r.DB)
	if r.Namespace == "" || strings.ContainsAny(r.Namespace, " \t\n*?[]") {
		p.add("WORK_NAMESPACE must be a non-empty name without spaces or glob characters")
	}
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 65535
}
