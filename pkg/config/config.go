package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Error names every missing or malformed variable, on one line.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "config: " + strings.Join(e.Problems, "; ")
}

// load fills c from environ, turning the library's errors into an *Error that
// names variables rather than Go fields. It never echoes a value. A variable
// of FileVars that c reads may come from <NAME>_FILE instead.
func load(c any, environ []string) error {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	fields := envNames(reflect.TypeOf(c).Elem())
	if err := readFileVars(vars, slices.Collect(maps.Values(fields))); err != nil {
		return err
	}
	err := env.ParseWithOptions(c, env.Options{Environment: vars})
	if err == nil {
		return nil
	}
	var p problems
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		agg.Errors = []error{err}
	}
	for _, e := range agg.Errors {
		var parse env.ParseError
		var notSet env.VarIsNotSetError
		switch {
		case errors.As(e, &notSet):
			p.add(notSet.Key + " is required")
		case errors.As(e, &parse):
			name := fields[parse.Name]
			p.add(fmt.Sprintf("%s is malformed: want %s", name, describe(parse.Type)))
		default:
			p.add(e.Error())
		}
	}
	return p.err()
}

// envNames maps Go field names to their variable names, embedded structs
// included. Field names are unique across a command's struct for this reason.
func envNames(t reflect.Type) map[string]string {
	names := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for k, v := range envNames(f.Type) {
				names[k] = v
			}
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		names[f.Name] = tag
	}
	return names
}

func describe(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "a Go duration such as 30s or 5m"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "a whole number"
	default:
		return t.String()
	}
}

// VarNames lists the environment variables a configuration struct (such as
// Ingest{}) reads, embedded structs included, and <NAME>_FILE for those of
// FileVars among them.
func VarNames(c any) []string {
	seen := map[string]bool{}
	for _, name := range envNames(reflect.TypeOf(c)) {
		seen[name] = true
		if slices.Contains(FileVars, name) {
			seen[name+"_FILE"] = true
		}
	}
	names := slices.Collect(maps.Keys(seen))
	sort.Strings(names)
	return names
}

// problems gathers what is wrong with a configuration, one line each; each
// section's file adds the checks of its own variables.
type problems []string

func (p *problems) add(s string) { *p = append(*p, s) }

// services checks what every command that reaches Postgres and Redis
// reads: the database, Redis (its password file resolved), logging and
// the livemode filter.
func (p *problems) services(d Database, r *Redis, l Log, m Livemode) {
	p.database(d)
	p.redis(r)
	p.log(l)
	p.livemode(m)
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return &Error{Problems: p}
}

func (p *problems) positive(name string, v int) {
	if v <= 0 {
		p.add(fmt.Sprintf("%s must be a positive whole number, got %d", name, v))
	}
}

func (p *problems) nonNegative(name string, v int) {
	if v < 0 {
		p.add(fmt.Sprintf("%s must be 0 or more, got %d", name, v))
	}
}

func (p *problems) positiveDuration(name string, d time.Duration) {
	if d <= 0 {
		p.add(fmt.Sprintf("%s must be a positive duration such as 30s, got %s", name, d))
	}
}

func (p *problems) port(name string, v int) {
	if v < 0 || v > 65535 {
		p.add(fmt.Sprintf("%s must be a TCP port (0-65535), got %d", name, v))
	}
}
