package check

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded objects of deploy/k8s/*.yaml.
type manifests struct {
	services     map[string]*corev1.Service
	secrets      map[string]*corev1.Secret
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
}

// load decodes every document of every YAML file in dir strictly: a field
// the Kubernetes types do not have, a duplicate field or an unknown kind is
// an error.
func load(dir string) (*manifests, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml in %s", dir)
	}
	m := &manifests{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		statefulSets: map[string]*appsv1.StatefulSet{}, deployments: map[string]*appsv1.Deployment{}}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			if err := m.add(doc); err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", filepath.Base(f), i+1, err)
			}
		}
	}
	return m, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func (m *manifests) add(doc string) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
		return err
	}
	strict := func(into any) (string, error) {
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			return "", fmt.Errorf("%s/%s: %w", tm.APIVersion, tm.Kind, err)
		}
		return into.(metav1.Object).GetName(), nil
	}
	var name string
	var err error
	var dup bool
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Service":
		o := &corev1.Service{}
		if name, err = strict(o); err == nil {
			_, dup = m.services[name]
			m.services[name] = o
		}
	case "v1 Secret":
		o := &corev1.Secret{}
		if name, err = strict(o); err == nil {
			_, dup = m.secrets[name]
			m.secrets[name] = o
		}
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		if name, err = strict(o); err == nil {
			_, dup = m.statefulSets[name]
			m.statefulSets[name] = o
		}
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		if name, err = strict(o); err == nil {
			_, dup = m.deployments[name]
			m.deployments[name] = o
		}
	default:
		return fmt.Errorf("kind %q of apiVersion %q: not one this test knows (add it)", tm.Kind, tm.APIVersion)
	}
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("%s without metadata.name", tm.Kind)
	}
	if dup {
		return fmt.Errorf("%s %s defined twice", tm.Kind, name)
	}
	return nil
}

// workload is a pod template with its name and selector.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	template   corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim
}

func (m *manifests) workloads() []workload {
	var ws []workload
	for n, s := range m.statefulSets {
		ws = append(ws, workload{"StatefulSet", n, s.Spec.Selector, s.Spec.Template, s.Spec.VolumeClaimTemplates})
	}
	for n, d := range m.deployments {
		ws = append(ws, workload{"Deployment", n, d.Spec.Selector, d.Spec.Template, nil})
	}
	slices.SortFunc(ws, func(a, b workload) int { return strings.Compare(a.name, b.name) })
	return ws
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m, err := load("..")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.statefulSets) != 1 || len(m.deployments) != 1 || len(m.secrets) != 1 || len(m.services) != 2 {
		t.Fatalf("want the driver StatefulSet, the executors Deployment, a Secret and 2 Services; got %d, %d, %d, %d",
			len(m.statefulSets), len(m.deployments), len(m.secrets), len(m.services))
	}
}

// The strict decoding refuses what a lenient one would drop.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	m := &manifests{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{},
		statefulSets: map[string]*appsv1.StatefulSet{}, deployments: map[string]*appsv1.Deployment{}}
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, imag: i}]}}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	} {
		if err := m.add(doc); err == nil {
			t.Errorf("accepted:\n%s", doc)
		}
	}
}

func TestManifestsCrossReferences(t *testing.T) {
	m, err := load("..")
	if err != nil {
		t.Fatal(err)
	}
	crossCheck(t, m)
}

// reporter is what the checks report to: a *testing.T, or a recorder.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// recorder records whether a check failed.
type recorder struct{ failed bool }

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }

func crossCheck(t reporter, m *manifests) {
	t.Helper()
	for _, w := range m.workloads() {
		checkWorkload(t, m, w)
	}
	for name, s := range m.services {
		checkService(t, m, name, s)
	}
	for name, ss := range m.statefulSets {
		svc := m.services[ss.Spec.ServiceName]
		switch {
		case svc == nil:
			t.Errorf("StatefulSet %s: serviceName %q names no Service", name, ss.Spec.ServiceName)
		case svc.Spec.ClusterIP != corev1.ClusterIPNone:
			t.Errorf("StatefulSet %s: its Service %s must be headless (clusterIP: None)", name, svc.Name)
		case !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ss.Spec.Template.Labels)):
			t.Errorf("StatefulSet %s: its Service %s does not select its pods", name, svc.Name)
		}
	}
}

func checkWorkload(t reporter, m *manifests, w workload) {
	t.Helper()
	where := w.kind + " " + w.name
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || w.selector == nil || sel.Empty() {
		t.Errorf("%s: selector %v: %v", where, w.selector, err)
	} else if !sel.Matches(labels.Set(w.template.Labels)) {
		t.Errorf("%s: selector %v does not match the pod labels %v", where, w.selector, w.template.Labels)
	}
	// No other workload's selector may take these pods.
	for _, o := range m.workloads() {
		if o.name == w.name {
			continue
		}
		if s, err := metav1.LabelSelectorAsSelector(o.selector); err == nil && s.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s: %s %s selects its pods too", where, o.kind, o.name)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range w.template.Spec.Volumes {
		volumes[v.Name] = v
		if v.Secret != nil {
			sec := m.secrets[v.Secret.SecretName]
			if sec == nil {
				t.Errorf("%s: volume %s: Secret %q is not defined", where, v.Name, v.Secret.SecretName)
				continue
			}
			for _, it := range v.Secret.Items {
				if !secretHasKey(sec, it.Key) {
					t.Errorf("%s: volume %s: Secret %s has no key %q", where, v.Name, sec.Name, it.Key)
				}
			}
		}
	}
	claims := map[string]bool{}
	for _, c := range w.claims {
		claims[c.Name] = true
		if _, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
			t.Errorf("%s: volume claim %s requests no storage", where, c.Name)
		}
	}
	if len(w.template.Spec.Containers) == 0 {
		t.Errorf("%s: no containers", where)
	}
	for _, c := range w.template.Spec.Containers {
		cw := where + " container " + c.Name
		if c.Image == "" || strings.Contains(strings.SplitN(c.Image, "/", 2)[0], ".") {
			t.Errorf("%s: image %q: want a local image name (no registry host)", cw, c.Image)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		mounts := map[string]string{} // mount path -> volume
		for _, vm := range c.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok && !claims[vm.Name] {
				t.Errorf("%s: volume mount %s names no volume or volume claim", cw, vm.Name)
			}
			mounts[vm.MountPath] = vm.Name
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
				if s := m.secrets[r.SecretKeyRef.Name]; s == nil || !secretHasKey(s, r.SecretKeyRef.Key) {
					t.Errorf("%s: env %s: Secret %s key %s is not defined", cw, e.Name, r.SecretKeyRef.Name, r.SecretKeyRef.Key)
				}
			}
		}
		// Resources: requests and limits of CPU and memory, requests <= limits.
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okr := c.Resources.Requests[r]
			lim, okl := c.Resources.Limits[r]
			if !okr || !okl {
				t.Errorf("%s: %s request and limit are both required", cw, r)
			} else if req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s above its limit %s", cw, r, req.String(), lim.String())
			}
		}
		// Flags of the Sluice binaries.
		args := append(append([]string{}, c.Command...), c.Args...)
		for _, a := range args {
			for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
				if !env[ref[1]] {
					t.Errorf("%s: %s refers to $(%s), which the container does not define", cw, a, ref[1])
				}
			}
		}
		checkFlags(t, m, cw, args, mounts, volumes, ports)
		// Probes.
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s: readiness and liveness probes are required", cw)
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p == nil {
				continue
			}
			switch {
			case p.Exec != nil:
				cmd := p.Exec.Command
				if len(cmd) < 2 || cmd[1] != "healthcheck" || (len(c.Command) > 0 && cmd[0] != c.Command[0]) || !strings.HasPrefix(cmd[0], "/") {
					t.Errorf("%s: exec probe %v: want the image's binary with healthcheck", cw, cmd)
				}
				checkFlags(t, m, cw+" probe", cmd, mounts, volumes, ports)
			case p.TCPSocket != nil:
				if p.TCPSocket.Port.Type == 1 { // a name
					if _, ok := ports[p.TCPSocket.Port.StrVal]; !ok {
						t.Errorf("%s: tcp probe on port %q, which the container does not name", cw, p.TCPSocket.Port.StrVal)
					}
				}
			default:
				t.Errorf("%s: probe with neither exec nor tcpSocket", cw)
			}
			if p.TimeoutSeconds > 0 && p.PeriodSeconds > 0 && p.TimeoutSeconds > p.PeriodSeconds+1 {
				t.Errorf("%s: probe timeout %ds much longer than its period %ds", cw, p.TimeoutSeconds, p.PeriodSeconds)
			}
		}
	}
}

// checkFlags checks the flags that name files, services and ports.
func checkFlags(t reporter, m *manifests, where string, args []string, mounts map[string]string, volumes map[string]corev1.Volume, ports map[string]int32) {
	t.Helper()
	for _, a := range args {
		name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			continue
		}
		switch name {
		case "secret-file":
			// The file must be a key of a Secret volume mounted above it.
			dir, file := filepath.Split(val)
			vol, ok := volumes[mounts[filepath.Clean(dir)]]
			if !ok || vol.Secret == nil {
				t.Errorf("%s: --secret-file=%s: no Secret volume is mounted at %s", where, val, dir)
				continue
			}
			found := false
			for _, it := range vol.Secret.Items {
				found = found || it.Path == file
			}
			if !found {
				t.Errorf("%s: --secret-file=%s: the Secret volume %s has no item at %s", where, val, vol.Name, file)
			}
		case "master", "driver":
			host, port, err := net.SplitHostPort(val)
			if err != nil {
				t.Errorf("%s: --%s=%s: %v", where, name, val, err)
				continue
			}
			if host == "127.0.0.1" { // the container's own port
				if !hasPort(ports, port) {
					t.Errorf("%s: --%s=%s: the container has no port %s", where, name, val, port)
				}
				continue
			}
			svc := m.services[host]
			if svc == nil {
				t.Errorf("%s: --%s=%s: no Service named %s", where, name, val, host)
				continue
			}
			if !serviceHasPort(svc, port) {
				t.Errorf("%s: --%s=%s: Service %s has no port %s", where, name, val, host, port)
			}
		case "listen", "advertise":
			_, port, err := net.SplitHostPort(val)
			if err != nil {
				t.Errorf("%s: --%s=%s: %v", where, name, val, err)
			} else if !hasPort(ports, port) && !strings.Contains(where, "probe") {
				t.Errorf("%s: --%s=%s: the container does not declare port %s", where, name, val, port)
			}
		case "state-dir", "work-dir":
			if _, ok := mounts[val]; !ok {
				t.Errorf("%s: --%s=%s: no volume is mounted there", where, name, val)
			}
		}
	}
}

func hasPort(ports map[string]int32, port string) bool {
	for _, p := range ports {
		if strconv.Itoa(int(p)) == port {
			return true
		}
	}
	return false
}

func serviceHasPort(s *corev1.Service, port string) bool {
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return true
		}
	}
	return false
}

func secretHasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.StringData[key]; ok {
		return true
	}
	_, ok := s.Data[key]
	return ok
}

// checkService: the selector picks the pods of exactly one workload, and
// every port's target is a port of its containers.
func checkService(t reporter, m *manifests, name string, s *corev1.Service) {
	t.Helper()
	if len(s.Spec.Selector) == 0 {
		t.Errorf("Service %s: no selector", name)
		return
	}
	var picked []workload
	for _, w := range m.workloads() {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
			picked = append(picked, w)
		}
	}
	if len(picked) != 1 {
		t.Errorf("Service %s: its selector %v picks the pods of %d workloads, want 1", name, s.Spec.Selector, len(picked))
		return
	}
	for _, p := range s.Spec.Ports {
		found := false
		for _, c := range picked[0].template.Spec.Containers {
			for _, cp := range c.Ports {
				if (p.TargetPort.Type == 1 && cp.Name == p.TargetPort.StrVal) ||
					(p.TargetPort.Type == 0 && p.TargetPort.IntVal == cp.ContainerPort) ||
					(p.TargetPort.IntVal == 0 && p.TargetPort.StrVal == "" && p.Port == cp.ContainerPort) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("Service %s: port %s targets %s, which no container of %s %s declares", name, p.Name, p.TargetPort.String(), picked[0].kind, picked[0].name)
		}
	}
}

// The checks catch broken references: each mutation of a good manifest set
// must make TestManifestsCrossReferences fail.
func TestCrossReferenceChecksFail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(m *manifests)
	}{
		{"selector", func(m *manifests) {
			m.deployments["sluice-executor"].Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "nope"
		}},
		{"service name", func(m *manifests) { m.statefulSets["sluice-driver"].Spec.ServiceName = "nope" }},
		{"secret key", func(m *manifests) {
			m.secrets["sluice-secret"].StringData = map[string]string{"other": ""}
		}},
		{"target port", func(m *manifests) {
			m.deployments["sluice-executor"].Spec.Template.Spec.Containers[0].Ports[0].Name = "other"
		}},
		{"driver address", func(m *manifests) {
			c := &m.deployments["sluice-executor"].Spec.Template.Spec.Containers[0]
			for i, a := range c.Args {
				if strings.HasPrefix(a, "--driver=") {
					c.Args[i] = "--driver=sluice-driver:7000"
				}
			}
		}},
		{"resources", func(m *manifests) {
			m.statefulSets["sluice-driver"].Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Mi")
		}},
		{"mount", func(m *manifests) {
			m.statefulSets["sluice-driver"].Spec.Template.Spec.Containers[0].VolumeMounts[0].Name = "nope"
		}},
	} {
		m, err := load("..")
		if err != nil {
			t.Fatal(err)
		}
		tc.mutate(m)
		rec := &recorder{}
		crossCheck(rec, m)
		if !rec.failed {
			t.Errorf("%s: a broken reference passed the checks", tc.name)
		}
	}
}
