package config

import (
	"errors"
	"net"
	"net/url"
)

// WebUI is the configuration of `bin/worker webui`: the gocraft/work job
// UI reads Redis, its console reads Postgres.
type WebUI struct {
	Database
	Redis
	Log
	// Livemode is what the console's replay applies, as the workers do.
	Livemode
	// Addr is where the authenticating proxy listens. Default: 127.0.0.1:5040.
	Addr string `env:"WEBUI_ADDR" envDefault:"127.0.0.1:5040"`
	// LoginUser is the HTTP basic auth user; empty means no login (loopback only). Default: empty.
	LoginUser string `env:"WEBUI_USERNAME"`
	// LoginPassword is the HTTP basic auth password. Default: empty.
	LoginPassword string `env:"WEBUI_PASSWORD"`
}

// LoadWebUI reads the web UI's configuration from environ.
func LoadWebUI(environ []string) (WebUI, error) {
	var c WebUI
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.database(c.Database)
	p.redis(&c.Redis)
	p.log(c.Log)
	p.livemode(c.Livemode)
	host, _, err := splitHostPort(c.Addr)
	switch {
	case err != nil:
		p.add("WEBUI_ADDR must be host:port, such as 127.0.0.1:5040")
	case (c.LoginUser == "") != (c.LoginPassword == ""):
		p.add("WEBUI_USERNAME and WEBUI_PASSWORD must be set together")
	case c.LoginUser == "" && !IsLoopback(host):
		p.add("WEBUI_ADDR is not a loopback address: set WEBUI_USERNAME and WEBUI_PASSWORD to serve the web UI beyond this machine")
	}
	return c, p.err()
}

// IsLoopback reports whether host (a name or an IP) means this machine only.
// An empty host means every interface, so it is not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitHostPort(addr string) (string, string, error) {
	u, err := url.Parse("//" + addr)
	if err != nil {
		return "", "", err
	}
	if u.Port() == "" {
		return "", "", errors.New("no port")
	}
	return u.Hostname(), u.Port(), nil
}
