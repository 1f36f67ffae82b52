package deploy_test

import (
	"errors"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
)

// kedaRedisConnection and kedaRedisMetadata are what KEDA's redis and
// redis-sentinel scalers read from a trigger: redisConnectionInfo and
// redisMetadata of KEDA v2.21.0 (pkg/scalers/redis_scaler.go), their keda
// tags copied (TLS left out). KEDA's own parser, scalersconfig.TypedConfig,
// fills them from the trigger's metadata, the scale target's variables
// (the names in the metadata's *FromEnv keys) and the
// TriggerAuthentication's parameters, in the order the scaler does.
type kedaRedisConnection struct {
	Addresses        []string `keda:"name=address;addresses, order=triggerMetadata;authParams;resolvedEnv"`
	Username         string   `keda:"name=username,          order=triggerMetadata;resolvedEnv;authParams"`
	Password         string   `keda:"name=password,          order=triggerMetadata;resolvedEnv;authParams"`
	SentinelUsername string   `keda:"name=sentinelUsername,  order=triggerMetadata;authParams;resolvedEnv"`
	SentinelPassword string   `keda:"name=sentinelPassword,  order=triggerMetadata;authParams;resolvedEnv"`
	SentinelMaster   string   `keda:"name=sentinelMaster,    order=triggerMetadata;authParams;resolvedEnv"`
	Hosts            []string `keda:"name=host;hosts,        order=triggerMetadata;resolvedEnv;authParams"`
	Ports            []string `keda:"name=port;ports,        order=triggerMetadata;resolvedEnv;authParams"`
}

type kedaRedisMetadata struct {
	ListLength           int64               `keda:"name=listLength,           order=triggerMetadata, default=5"`
	ActivationListLength int64               `keda:"name=activationListLength, order=triggerMetadata, optional"`
	ListName             string              `keda:"name=listName,             order=triggerMetadata"`
	DatabaseIndex        int                 `keda:"name=databaseIndex,        order=triggerMetadata, optional"`
	ConnectionInfo       kedaRedisConnection `keda:"optional"`
	triggerIndex         int
}

// Validate joins hosts and ports into addresses, as KEDA's
// validateRedisAddress does: they are added to any addresses given.
func (m *kedaRedisMetadata) Validate() error {
	c := &m.ConnectionInfo
	if len(c.Hosts) != 0 && len(c.Ports) != 0 {
		if len(c.Hosts) != len(c.Ports) {
			return errors.New("unequal number of hosts and ports")
		}
		for i := range c.Hosts {
			c.Addresses = append(c.Addresses, net.JoinHostPort(c.Hosts[i], c.Ports[i]))
		}
	}
	if len(c.Addresses) == 0 || c.Addresses[0] == "" {
		return errors.New("no address or host given")
	}
	return nil
}

// kedaParams are the metadata keys kedaRedisMetadata reads.
func kedaParams() []string {
	var names []string
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			tag, ok := f.Tag.Lookup("keda")
			if !ok {
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			for part := range strings.SplitSeq(tag, ",") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(part), "name="); ok {
					names = append(names, strings.Split(v, ";")...)
				}
			}
		}
	}
	walk(reflect.TypeFor[kedaRedisMetadata]())
	return names
}

// KEDA watches the very list the code queues on, in the Redis the worker
// uses, found the same way: KEDA's own parser, given the trigger, the
// worker container's variables (resolved as KEDA resolves them, never its
// files) and the TriggerAuthentication's Secret keys, yields the worker's
// database, list, address (REDIS_HOST:REDIS_PORT, or with
// REDIS_SENTINEL_ADDRS the same sentinels and master name, through a
// redis-sentinel trigger) and passwords.
func TestKEDATriggerWatchesTheQueue(t *testing.T) {
	t.Parallel()
	// Distinct values for the Secret's keys, so that a password taken from
	// the wrong key shows.
	secretValues := map[string]string{"REDIS_PASSWORD": "master-password", "REDIS_SENTINEL_PASSWORD": "sentinel-password"}
	for _, o := range overlays {
		r := render(t, o)
		if len(r.scaledObjects) != 1 {
			t.Fatalf("%s: %d ScaledObjects", o, len(r.scaledObjects))
		}
		so := r.scaledObjects[0]
		target := r.deployment(t, so.Spec.ScaleTargetRef.Name)
		if commandOf(t, o+"/"+target.Name, target.Spec.Template.Spec.Containers[0].Command).binary != "worker" ||
			len(target.Spec.Template.Spec.Containers[0].Command) != 1 {
			t.Errorf("%s: the ScaledObject scales %s, not the worker pool", o, target.Name)
		}
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
			t.Errorf("%s: minReplicaCount must be at least 1 (retries and the reaper live in running pools)", o)
		}
		worker := target.Spec.Template.Spec.Containers[0]
		where := o + "/" + target.Name + "/" + worker.Name
		env, _ := r.configEnviron(t, where, &target.Spec.Template.Spec, worker, secretValues)
		cfg, err := config.LoadWorker(pairs(env))
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		want := "redis"
		if cfg.Redis.UsesSentinel() {
			want = "redis-sentinel"
		}
		if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != want {
			t.Fatalf("%s: want one %s trigger (the worker's REDIS_SENTINEL_ADDRS is %q), got %+v", o, want, env["REDIS_SENTINEL_ADDRS"], so.Spec.Triggers)
		}
		trigger := so.Spec.Triggers[0]
		known := kedaParams()
		for k := range trigger.Metadata {
			if !slices.Contains(known, strings.TrimSuffix(k, "FromEnv")) {
				t.Errorf("%s: trigger metadata %q is nothing KEDA's redis scaler reads", o, k)
			}
		}
		for _, k := range []string{"password", "sentinelPassword"} {
			if _, ok := trigger.Metadata[k]; ok {
				t.Errorf("%s: trigger metadata %q holds a password in the ScaledObject: give it through the TriggerAuthentication", o, k)
			}
		}

		// The scale target's variables as KEDA resolves them: values,
		// ConfigMap keys and Secret keys; a <NAME>_FILE stays a path.
		resolved := r.environ(t, worker)
		for _, e := range worker.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				resolved[e.Name] = r.kedaSecret(t, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key, secretValues)
			}
		}
		auth := map[string]string{}
		if ref := trigger.AuthenticationRef; ref != nil {
			if ref.Kind != "" && ref.Kind != "TriggerAuthentication" {
				t.Fatalf("%s: the trigger authenticates through a %s, which no check covers", o, ref.Kind)
			}
			i := slices.IndexFunc(r.triggerAuths, func(ta *kedav1alpha1.TriggerAuthentication) bool { return ta.Name == ref.Name })
			if i < 0 {
				t.Fatalf("%s: TriggerAuthentication %s does not exist", o, ref.Name)
			}
			for _, s := range r.triggerAuths[i].Spec.SecretTargetRef {
				auth[s.Parameter] = r.kedaSecret(t, s.Name, s.Key, secretValues)
			}
		}
		sc := scalersconfig.ScalerConfig{TriggerType: trigger.Type, TriggerMetadata: trigger.Metadata, ResolvedEnv: resolved, AuthParams: auth}
		var md kedaRedisMetadata
		if err := sc.TypedConfig(&md); err != nil {
			t.Fatalf("%s: KEDA's parser rejects the trigger: %v", o, err)
		}
		got := md.ConnectionInfo
		if w := queue.ListKey(cfg.Redis.Namespace); md.ListName != w {
			t.Errorf("%s: KEDA watches list %q, the code queues on %q", o, md.ListName, w)
		}
		if md.DatabaseIndex != cfg.Redis.DB {
			t.Errorf("%s: KEDA reads database %d, the worker REDIS_DB %d", o, md.DatabaseIndex, cfg.Redis.DB)
		}
		if got.Password != cfg.Redis.Password {
			t.Errorf("%s: KEDA's Redis password is %q, the worker's %q", o, got.Password, cfg.Redis.Password)
		}
		if cfg.Redis.UsesSentinel() {
			if !slices.Equal(got.Addresses, cfg.Redis.SentinelAddrs) {
				t.Errorf("%s: KEDA asks sentinels %q, the worker %q", o, got.Addresses, cfg.Redis.SentinelAddrs)
			}
			if got.SentinelMaster != cfg.Redis.SentinelMaster {
				t.Errorf("%s: KEDA asks for master %q, the worker for %q", o, got.SentinelMaster, cfg.Redis.SentinelMaster)
			}
			if got.SentinelPassword != cfg.Redis.SentinelPassword {
				t.Errorf("%s: KEDA's sentinel password is %q, the worker's %q", o, got.SentinelPassword, cfg.Redis.SentinelPassword)
			}
		} else if !slices.Equal(got.Addresses, []string{cfg.Redis.Addr()}) {
			t.Errorf("%s: KEDA connects to %q, the worker to %s", o, got.Addresses, cfg.Redis.Addr())
		}
		if n, err := strconv.Atoi(trigger.Metadata["listLength"]); err != nil || n <= 0 {
			t.Errorf("%s: listLength %q: want a positive number of jobs per replica", o, trigger.Metadata["listLength"])
		}
	}
}

// kedaSecret is the value KEDA reads from key of Secret name: values's
// for the Secret the pods mount, else the overlay's Secret or template.
func (r *rendered) kedaSecret(t *testing.T, name, key string, values map[string]string) string {
	t.Helper()
	if v, ok := values[key]; ok && name == "stripe-webhooks" {
		return v
	}
	v, ok := r.secretData(t, name)[key]
	if !ok {
		t.Fatalf("overlays/%s: KEDA reads key %s of Secret %s, which it does not have", r.overlay, key, name)
	}
	return v
}
