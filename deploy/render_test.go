package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"stripe-webhooks/pkg/config"
)

// overlays are rendered and checked by every test: production-sentinel is
// production with components/redis-sentinel, production-sso with
// components/sso.
var overlays = []string{"dev", "production", "production-sentinel", "production-sso"}

// rendered is one overlay's objects, decoded into their API types.
type rendered struct {
	overlay         string
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	netpols         []*networkingv1.NetworkPolicy
	scaledObjects   []*kedav1alpha1.ScaledObject
	triggerAuths    []*kedav1alpha1.TriggerAuthentication
	serviceMonitors []*monitoringv1.ServiceMonitor
	rules           []*monitoringv1.PrometheusRule
	namespaces      []*corev1.Namespace
}

func decoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, autoscalingv2.AddToScheme,
		networkingv1.AddToScheme, kedav1alpha1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	// Strict: an unknown or duplicated field is an error.
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// render builds an overlay with kustomize and decodes every object strictly.
func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("kubernetes", "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	dec := decoder()
	r := &rendered{overlay: overlay}
	for _, res := range resMap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, gvk, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Fatalf("overlays/%s: %s %s does not decode strictly: %v", overlay, res.GetKind(), res.GetName(), err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.Secret:
			r.secrets = append(r.secrets, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas = append(r.hpas, o)
		case *networkingv1.NetworkPolicy:
			r.netpols = append(r.netpols, o)
		case *kedav1alpha1.ScaledObject:
			r.scaledObjects = append(r.scaledObjects, o)
		case *kedav1alpha1.TriggerAuthentication:
			r.triggerAuths = append(r.triggerAuths, o)
		case *monitoringv1.ServiceMonitor:
			r.serviceMonitors = append(r.serviceMonitors, o)
		case *monitoringv1.PrometheusRule:
			r.rules = append(r.rules, o)
		case *corev1.Namespace:
			r.namespaces = append(r.namespaces, o)
		default:
			t.Fatalf("overlays/%s: no check covers %s", overlay, gvk)
		}
	}
	return r
}

// ours are the Deployments of the services (not the dev overlay's backends).
func (r *rendered) ours() []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range r.deployments {
		if strings.HasPrefix(d.Name, "stripe-webhooks-") {
			out = append(out, d)
		}
	}
	return out
}

// sidecar reports whether c runs another project's image in one of our
// pods (components/sso's oauth2-proxy): the checks of our commands skip
// it; sso_test.go checks it.
func sidecar(c corev1.Container) bool { return imageName(c.Image) == "oauth2-proxy" }

func (r *rendered) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range r.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("overlays/%s has no Deployment %s", r.overlay, name)
	return nil
}

func (r *rendered) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	for _, c := range r.configMaps {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("overlays/%s has no ConfigMap %s", r.overlay, name)
	return nil
}

// secretData is the Secret the overlay generates, or else the template the
// platform team fills in.
func (r *rendered) secretData(t *testing.T, name string) map[string]string {
	t.Helper()
	for _, s := range r.secrets {
		if s.Name == name {
			data := map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
			for k, v := range s.StringData {
				data[k] = v
			}
			return data
		}
	}
	b, err := os.ReadFile(filepath.Join("kubernetes", "secret.template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatalf("secret.template.yaml: %v", err)
	}
	if s.Name != name {
		t.Fatalf("secret.template.yaml names %s, the manifests %s", s.Name, name)
	}
	return s.StringData
}

// environ resolves a container's env the way the kubelet does. A
// <NAME>_FILE variable is left a path: see configEnviron.
func (r *rendered) environ(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := r.configMap(t, ref.Name).Data[ref.Key]
			if !ok {
				t.Fatalf("overlays/%s: %s: %s reads ConfigMap %s key %s, which does not exist", r.overlay, c.Name, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := r.secretData(t, ref.Name)[ref.Key]
			if !ok && (ref.Optional == nil || !*ref.Optional) {
				t.Fatalf("overlays/%s: %s: %s reads Secret %s key %s, which the Secret does not have", r.overlay, c.Name, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "268435456"
		default:
			t.Fatalf("overlays/%s: %s: %s has a source no check covers", r.overlay, c.Name, e.Name)
		}
	}
	return env
}

// secretFile tells which Secret key the kubelet shows at path inside
// container c of pod: path must lie in a Secret volume mounted as a
// directory (a subPath mount is never updated when the Secret changes).
// rel is the file's path inside the volume.
func secretFile(pod *corev1.PodSpec, c corev1.Container, path string) (vol *corev1.SecretVolumeSource, volume, rel, key string, err error) {
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/")
		if path == dir && (m.SubPath != "" || m.SubPathExpr != "") {
			return nil, "", "", "", fmt.Errorf("%s is a subPath mount of volume %s, which the kubelet never updates", path, m.Name)
		}
		if r, ok := strings.CutPrefix(path, dir+"/"); ok && (mount == nil || len(dir) > len(strings.TrimSuffix(mount.MountPath, "/"))) {
			mount, rel = &c.VolumeMounts[i], r
		}
	}
	if mount == nil {
		return nil, "", "", "", fmt.Errorf("%s is in no volume the container mounts", path)
	}
	for _, v := range pod.Volumes {
		if v.Name == mount.Name {
			vol = v.Secret
		}
	}
	switch {
	case vol == nil:
		return nil, "", "", "", fmt.Errorf("%s is in volume %s, which is not a Secret volume of the pod", path, mount.Name)
	case mount.SubPath != "" || mount.SubPathExpr != "":
		return nil, "", "", "", fmt.Errorf("%s is in a subPath mount of volume %s, which the kubelet never updates", path, mount.Name)
	case len(vol.Items) == 0:
		if strings.Contains(rel, "/") {
			return nil, "", "", "", fmt.Errorf("%s: Secret volume %s has no subdirectories", path, mount.Name)
		}
		return vol, mount.Name, rel, rel, nil
	}
	for _, it := range vol.Items {
		if it.Path == rel {
			return vol, mount.Name, rel, it.Key, nil
		}
	}
	return nil, "", "", "", fmt.Errorf("%s: Secret volume %s projects no file %s", path, mount.Name, rel)
}

// configEnviron is the environment a container's command sees once it has
// read its <NAME>_FILE variables: environ, with each such variable pointing
// at a copy of the file the kubelet would project there (laid out as the
// kubelet does, one secretDir per volume, returned by volume name). The
// value of NAME comes from the Secret key NAME, whether the container has it
// as a file or as a variable; override replaces it. Every way the
// container's files can be wrong is reported on t.
func (r *rendered) configEnviron(t *testing.T, where string, pod *corev1.PodSpec, c corev1.Container, override map[string]string) (map[string]string, map[string]*secretDir) {
	t.Helper()
	env := r.environ(t, c)
	files := map[string]map[string]string{} // volume → rel → content
	paths := map[string][2]string{}         // NAME_FILE → volume, rel
	for _, name := range config.FileVars {
		path, ok := env[name+"_FILE"]
		if !ok {
			continue
		}
		if _, both := env[name]; both {
			t.Errorf("%s sets both %s and %s_FILE", where, name, name)
		}
		vol, volume, rel, key, err := secretFile(pod, c, path)
		if err != nil {
			t.Errorf("%s: %s_FILE: %v", where, name, err)
			continue
		}
		if key != name {
			t.Errorf("%s: %s_FILE=%s shows Secret key %s, want %s", where, name, path, key, name)
		}
		value, ok := r.secretData(t, vol.SecretName)[key]
		if !ok && (vol.Optional == nil || !*vol.Optional) {
			t.Errorf("%s: %s_FILE shows key %s of Secret %s, which the Secret does not have", where, name, key, vol.SecretName)
		}
		if v, ok := override[name]; ok {
			value = v
		}
		if files[volume] == nil {
			files[volume] = map[string]string{}
		}
		files[volume][rel] = value
		paths[name+"_FILE"] = [2]string{volume, rel}
	}
	for name, v := range override {
		if _, ok := env[name]; ok {
			env[name] = v
		}
	}
	dirs := map[string]*secretDir{}
	for volume, f := range files {
		dirs[volume] = newSecretDir(t, f)
	}
	for name, p := range paths {
		env[name] = dirs[p[0]].path(p[1])
	}
	return env, dirs
}

// secretDir lays files out as the kubelet's atomic writer does in a Secret
// volume: dir/..<version>/FILE, dir/..data -> ..<version>, and
// dir/FILE -> ..data/FILE. update swaps every file at once by renaming a
// new ..data link over the old, the way a changed Secret reaches a pod.
type secretDir struct {
	dir     string
	version int
	files   map[string]string
}

func newSecretDir(t *testing.T, files map[string]string) *secretDir {
	t.Helper()
	s := &secretDir{dir: t.TempDir(), files: map[string]string{}}
	s.update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *secretDir) path(name string) string { return filepath.Join(s.dir, name) }

// update changes the given files' contents, atomically for a reader of any.
func (s *secretDir) update(t *testing.T, files map[string]string) {
	t.Helper()
	for k, v := range files {
		s.files[k] = v
	}
	s.version++
	version := fmt.Sprintf("..v%d", s.version)
	if err := os.Mkdir(filepath.Join(s.dir, version), 0o750); err != nil {
		t.Fatal(err)
	}
	for name, v := range s.files {
		if err := os.WriteFile(filepath.Join(s.dir, version, name), []byte(v), 0o440); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if s.version > 1 {
		if err := os.RemoveAll(filepath.Join(s.dir, fmt.Sprintf("..v%d", s.version-1))); err != nil {
			t.Fatal(err)
		}
	}
}

func pairs(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, fmt.Sprintf("%s=%s", k, v))
	}
	return out
}

// containers lists a pod's init and regular containers.
func containers(d *appsv1.Deployment) []corev1.Container {
	return append(append([]corev1.Container{}, d.Spec.Template.Spec.InitContainers...), d.Spec.Template.Spec.Containers...)
}

func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	t.Parallel()
	for _, o := range overlays {
		r := render(t, o)
		if len(r.ours()) != 3 || len(r.hpas) != 1 || len(r.scaledObjects) != 1 || len(r.triggerAuths) != 1 || len(r.pdbs) != 2 || len(r.netpols) != 3 || len(r.namespaces) != 1 {
			t.Errorf("overlays/%s: %d Deployments of ours, %d HPAs, %d ScaledObjects, %d TriggerAuthentications, %d PDBs, %d NetworkPolicies, %d Namespaces",
				o, len(r.ours()), len(r.hpas), len(r.scaledObjects), len(r.triggerAuths), len(r.pdbs), len(r.netpols), len(r.namespaces))
		}
	}
	for _, o := range []string{"production", "production-sentinel"} {
		if r := render(t, o); len(r.serviceMonitors) != 1 || len(r.rules) != 1 {
			t.Errorf("overlays/%s lacks the monitoring component", o)
		}
	}
}

// The decoder really is strict: a misspelt field fails.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	t.Parallel()
	_, _, err := decoder().Decode([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 2}\n"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "replicaz") {
		t.Fatalf("a misspelt field decoded: %v", err)
	}
}
