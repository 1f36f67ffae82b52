package deploy_test

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// image is what the hardening check must know of an image a container runs.
type image struct {
	// uid and gid of the user the image is built for: the container runs as
	// them (its files and its entrypoint expect them).
	uid, gid int64
	// writes are the directories its process writes to. With a read-only
	// root filesystem each must be on a writable emptyDir. "$PGDATA" is the
	// directory the container's PGDATA names, which must lie strictly below
	// its volume's mount point: initdb, not running as root, must own the
	// data directory and chmod it, and a mount point belongs to root.
	writes []string
}

// images are the images the overlays run, by name without registry or tag.
// The services' images are distroless static:nonroot and write nothing. The
// dev overlay's backends are the official Debian-based postgres and redis
// images, whose postgres and redis users are uid and gid 999; run as them
// from the start, their entrypoints skip the chown-and-gosu step that needs
// root. Postgres writes its data directory, its socket and lock file
// (/var/run/postgresql), and the entrypoint and psql their temporary files;
// Redis its working directory /data (the append-only file).
var images = map[string]image{
	"stripe-webhooks-ingest": {uid: 65532, gid: 65532},
	"stripe-webhooks-worker": {uid: 65532, gid: 65532},
	"postgres":               {uid: 999, gid: 999, writes: []string{"$PGDATA", "/var/run/postgresql", "/tmp"}},
	"redis":                  {uid: 999, gid: 999, writes: []string{"/data"}},
	"oauth2-proxy":           {uid: 65532, gid: 65532}, // distroless static:nonroot
}

// imageName is ref's repository's last element: ghcr.io/x/redis:7 → redis.
func imageName(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	ref = path.Base(ref)
	ref, _, _ = strings.Cut(ref, ":")
	return ref
}

// hardeningProblems lists how a Deployment's pod falls short of the
// hardening every container gets, whoever's image it runs: no host
// namespaces and no service account token; each container as its image's
// non-root user and group (runAsNonRoot, fixed runAsUser and runAsGroup),
// the runtime's seccomp profile, a read-only root filesystem with writable
// emptyDir volumes wherever its process writes (and no other writable
// volume), no privilege escalation, every capability dropped and none
// added, CPU and memory requests and limits, and (besides init containers)
// liveness and readiness probes.
func hardeningProblems(d *appsv1.Deployment) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	pod := d.Spec.Template.Spec
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		bad("the pod shares a host namespace")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		bad("automountServiceAccountToken is not false: the pod gets an API token it never uses")
	}
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	init := len(pod.InitContainers)
	for i, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		where := c.Name
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		img, known := images[imageName(c.Image)]
		if !known {
			bad("%s runs image %s, which no check knows: add its user and the directories it writes to images", where, c.Image)
		}

		// The effective user: the container's setting, else the pod's.
		nonRoot, uid, gid, seccomp := psc.RunAsNonRoot, psc.RunAsUser, psc.RunAsGroup, psc.SeccompProfile
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		switch {
		case nonRoot == nil || !*nonRoot:
			bad("%s: not runAsNonRoot", where)
		case uid == nil || gid == nil:
			bad("%s: runAsUser and runAsGroup must be set (the image's user, not whatever the image names)", where)
		case *uid == 0 || *gid == 0:
			bad("%s: runs as user %d group %d: root", where, *uid, *gid)
		case known && (*uid != img.uid || *gid != img.gid):
			bad("%s: runs as %d:%d, image %s is built for %d:%d", where, *uid, *gid, c.Image, img.uid, img.gid)
		}
		if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
			bad("%s: no seccomp profile (want RuntimeDefault)", where)
		}
		if sc.Privileged != nil && *sc.Privileged {
			bad("%s: privileged", where)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("%s: root filesystem not read-only", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("%s: allowPrivilegeEscalation not false", where)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			bad("%s: capabilities: ALL not dropped", where)
		} else if len(sc.Capabilities.Add) > 0 {
			bad("%s: adds capabilities %v", where, sc.Capabilities.Add)
		}
		res := c.Resources
		for _, q := range []struct {
			what string
			q    *resource.Quantity
		}{
			{"CPU request", res.Requests.Cpu()}, {"memory request", res.Requests.Memory()},
			{"CPU limit", res.Limits.Cpu()}, {"memory limit", res.Limits.Memory()},
		} {
			if q.q.IsZero() {
				bad("%s: no %s", where, q.what)
			}
		}
		if i >= init && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
			bad("%s: liveness and readiness probes must both be set", where)
		}

		// Writable volumes: emptyDir only, and one under every directory
		// the process writes to.
		for _, m := range c.VolumeMounts {
			if v, ok := volumes[m.Name]; ok && !m.ReadOnly && v.EmptyDir == nil {
				bad("%s: volume %s is mounted writable at %s but is not an emptyDir", where, m.Name, m.MountPath)
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		for _, dir := range img.writes {
			strictlyBelow := false
			if dir == "$PGDATA" {
				if env["PGDATA"] == "" {
					bad("%s: PGDATA is not set: the image's default is its volume's mount point, which initdb cannot own", where)
					continue
				}
				dir, strictlyBelow = path.Clean(env["PGDATA"]), true
			}
			m := mountOf(c, dir)
			switch {
			case m == nil:
				bad("%s writes to %s, which is on the read-only root filesystem: mount an emptyDir there", where, dir)
			case m.ReadOnly || volumes[m.Name].EmptyDir == nil:
				bad("%s writes to %s, which is on volume %s: want a writable emptyDir", where, dir, m.Name)
			case strictlyBelow && path.Clean(m.MountPath) == dir:
				bad("%s: PGDATA %s is volume %s's mount point, owned by root: name a directory below it", where, dir, m.Name)
			}
		}
	}
	return out
}

// mountOf is the mount that holds dir inside container c (the deepest
// mount point at or above it), or nil.
func mountOf(c corev1.Container, dir string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if (dir == mp || strings.HasPrefix(dir, mp+"/")) && m.SubPath == "" && m.SubPathExpr == "" &&
			(best == nil || len(mp) > len(path.Clean(best.MountPath))) {
			best = &c.VolumeMounts[i]
		}
	}
	return best
}

// The hardening check itself: the dev overlay as it is passes, and taking
// away any one piece of hardening from the throwaway Postgres or Redis (or
// from a service) fails it.
func TestHardeningCheckCatchesMistakes(t *testing.T) {
	t.Parallel()
	r := render(t, "dev")
	type mutation struct {
		name   string
		mutate func(pod *corev1.PodSpec, c *corev1.Container)
	}
	without := func(mounts []corev1.VolumeMount, at string) []corev1.VolumeMount {
		return slices.DeleteFunc(mounts, func(m corev1.VolumeMount) bool { return m.MountPath == at })
	}
	common := []mutation{
		{"service account token", func(p *corev1.PodSpec, _ *corev1.Container) { p.AutomountServiceAccountToken = nil }},
		{"runAsNonRoot", func(p *corev1.PodSpec, _ *corev1.Container) { p.SecurityContext.RunAsNonRoot = nil }},
		{"runAsUser", func(p *corev1.PodSpec, _ *corev1.Container) { p.SecurityContext.RunAsUser = nil }},
		{"runAsGroup", func(p *corev1.PodSpec, _ *corev1.Container) { p.SecurityContext.RunAsGroup = nil }},
		{"root user in the container", func(_ *corev1.PodSpec, c *corev1.Container) { c.SecurityContext.RunAsUser = new(int64) }},
		{"another user than the image's", func(_ *corev1.PodSpec, c *corev1.Container) { u := int64(1000); c.SecurityContext.RunAsUser = &u }},
		{"seccomp", func(p *corev1.PodSpec, _ *corev1.Container) { p.SecurityContext.SeccompProfile = nil }},
		{"unconfined seccomp in the container", func(_ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}},
		{"read-only root", func(_ *corev1.PodSpec, c *corev1.Container) { c.SecurityContext.ReadOnlyRootFilesystem = nil }},
		{"no escalation", func(_ *corev1.PodSpec, c *corev1.Container) { c.SecurityContext.AllowPrivilegeEscalation = nil }},
		{"drop ALL", func(_ *corev1.PodSpec, c *corev1.Container) { c.SecurityContext.Capabilities = nil }},
		{"an added capability", func(_ *corev1.PodSpec, c *corev1.Container) {
			c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		}},
		{"CPU limit", func(_ *corev1.PodSpec, c *corev1.Container) { delete(c.Resources.Limits, corev1.ResourceCPU) }},
		{"memory request", func(_ *corev1.PodSpec, c *corev1.Container) { delete(c.Resources.Requests, corev1.ResourceMemory) }},
		{"liveness probe", func(_ *corev1.PodSpec, c *corev1.Container) { c.LivenessProbe = nil }},
		{"readiness probe", func(_ *corev1.PodSpec, c *corev1.Container) { c.ReadinessProbe = nil }},
		{"a writable hostPath", func(p *corev1.PodSpec, c *corev1.Container) {
			p.Volumes = append(p.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var"}}})
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "host", MountPath: "/host"})
		}},
	}
	cases := map[string][]mutation{
		"postgres": append(slices.Clone(common),
			mutation{"PGDATA", func(_ *corev1.PodSpec, c *corev1.Container) {
				c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "PGDATA" })
			}},
			mutation{"PGDATA below the mount point", func(_ *corev1.PodSpec, c *corev1.Container) {
				for i := range c.Env {
					if c.Env[i].Name == "PGDATA" {
						c.Env[i].Value = "/var/lib/postgresql/data"
					}
				}
			}},
			mutation{"the data volume", func(_ *corev1.PodSpec, c *corev1.Container) {
				c.VolumeMounts = without(c.VolumeMounts, "/var/lib/postgresql/data")
			}},
			mutation{"the socket directory's volume", func(_ *corev1.PodSpec, c *corev1.Container) {
				c.VolumeMounts = without(c.VolumeMounts, "/var/run/postgresql")
			}},
			mutation{"the /tmp volume", func(_ *corev1.PodSpec, c *corev1.Container) { c.VolumeMounts = without(c.VolumeMounts, "/tmp") }},
			mutation{"a writable volume mounted read-only", func(_ *corev1.PodSpec, c *corev1.Container) {
				for i := range c.VolumeMounts {
					c.VolumeMounts[i].ReadOnly = true
				}
			}},
		),
		"redis": append(slices.Clone(common),
			mutation{"the /data volume", func(_ *corev1.PodSpec, c *corev1.Container) { c.VolumeMounts = without(c.VolumeMounts, "/data") }},
		),
		"stripe-webhooks-worker": common,
	}
	for name, muts := range cases {
		d := r.deployment(t, name)
		if p := hardeningProblems(d); len(p) > 0 {
			t.Errorf("dev/%s as rendered: %v", name, p)
		}
		for _, m := range muts {
			dd := d.DeepCopy()
			pod := &dd.Spec.Template.Spec
			m.mutate(pod, &pod.Containers[0])
			if p := hardeningProblems(dd); len(p) == 0 {
				t.Errorf("dev/%s without %s passes the hardening check", name, m.name)
			}
		}
	}
}
