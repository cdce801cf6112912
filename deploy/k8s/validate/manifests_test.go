package validate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

var renderDir = flag.String("render", "", "also write each kustomization's rendered YAML to this directory")

// kustomizations are the directories under deploy/k8s that render to
// manifests.
var kustomizations = []string{"base", "overlays/cpu", "overlays/gpu"}

// What the server is: its gRPC port, and the longest it flushes telemetry
// for after FLOWERD_SHUTDOWN_TIMEOUT (cmd/flowerd/main.go).
const (
	grpcPort       = 50051
	telemetryFlush = 10 * time.Second
	// closeMargin is what the grace period must leave for closing Badger.
	closeMargin = 10 * time.Second
)

// sdkEnv are OTEL_* variables that the OpenTelemetry SDK reads itself
// (resource.WithFromEnv, the OTLP exporters), so cmd/flowerd names them only
// in comments. README.md documents them.
var sdkEnv = map[string]bool{
	"OTEL_SERVICE_NAME":           true,
	"OTEL_RESOURCE_ATTRIBUTES":    true,
	"OTEL_EXPORTER_OTLP_INSECURE": true,
}

// serverEnv matches the names of the variables the server and its
// OpenTelemetry SDK read.
var serverEnv = regexp.MustCompile(`^(?:FLOWERD|GOMLX|OTEL)_`)

// object is one rendered manifest.
type object struct {
	gvk  schema.GroupVersionKind
	name string
	json []byte
	obj  runtime.Object // strictly decoded
}

func (o object) String() string { return o.gvk.Kind + "/" + o.name }

// decoder decodes the kinds the manifests use, rejecting unknown and
// duplicate fields.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(appsv1.AddToScheme(s))
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// render runs kustomize on dir (relative to deploy/k8s).
func render(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("..", dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	if *renderDir != "" {
		y, err := m.AsYaml()
		if err != nil {
			t.Fatalf("kustomize build %s: %v", dir, err)
		}
		out := filepath.Join(*renderDir, strings.ReplaceAll(dir, "/", "-")+".yaml")
		if err := os.MkdirAll(*renderDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, y, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", out)
	}
	var objs []object
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		g := r.GetGvk()
		objs = append(objs, object{
			gvk:  schema.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind},
			name: r.GetName(), json: data,
		})
	}
	return objs
}

// checkObject validates one object against the OpenAPI schema and by strict
// decoding, and sets o.obj.
func checkObject(api *openAPI, o *object) []string {
	var m map[string]any
	if err := decodeJSON(o.json, &m); err != nil {
		return []string{fmt.Sprintf("decode: %v", err)}
	}
	errs := api.validate(o.gvk, m)
	obj, _, err := decoder.Decode(o.json, nil, nil)
	if err != nil {
		errs = append(errs, fmt.Sprintf("strict decode: %v", err))
	}
	o.obj = obj
	return errs
}

// decodeJSON decodes data into v, keeping numbers as json.Number.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

func TestManifests(t *testing.T) {
	api, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	known, err := flowerdEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			if len(objs) == 0 {
				t.Fatalf("kustomize build %s: no objects", dir)
			}
			ok := true
			for i := range objs {
				for _, e := range checkObject(api, &objs[i]) {
					t.Errorf("%s: %s", objs[i], e)
					ok = false
				}
			}
			if !ok {
				return
			}
			for _, e := range checkTrainer(objs, known, strings.HasSuffix(dir, "gpu")) {
				t.Error(e)
			}
		})
	}
}

// flowerdEnv returns the FLOWERD_*, GOMLX_* and OTEL_* names that
// cmd/flowerd reads, from its source.
func flowerdEnv() (map[string]bool, error) {
	files, err := filepath.Glob("../../../cmd/flowerd/*.go")
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("find cmd/flowerd sources: %v", err)
	}
	names := map[string]bool{}
	re := regexp.MustCompile(`"((?:FLOWERD|GOMLX|OTEL)_[A-Z0-9_]+)"`) // as serverEnv, quoted
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range re.FindAllSubmatch(src, -1) {
			names[string(m[1])] = true
		}
	}
	if !names["FLOWERD_ADDR"] {
		return nil, fmt.Errorf("cmd/flowerd sources name no FLOWERD_ADDR: is the pattern out of date?")
	}
	return names, nil
}

// checkTrainer checks the rendered objects against what flowerd needs.
func checkTrainer(objs []object, known map[string]bool, gpu bool) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	configMaps := map[string]*corev1.ConfigMap{}
	claims := map[string]bool{}
	services := map[string]*corev1.Service{}
	var sets []*appsv1.StatefulSet
	for _, o := range objs {
		if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
			fail("%s: name: %s", o, strings.Join(errs, "; "))
		}
		switch obj := o.obj.(type) {
		case *corev1.ConfigMap:
			configMaps[obj.Name] = obj
		case *corev1.PersistentVolumeClaim:
			claims[obj.Name] = true
		case *corev1.Service:
			services[obj.Name] = obj
		case *appsv1.StatefulSet:
			sets = append(sets, obj)
		}
	}
	if len(sets) != 1 || sets[0].Name != "flowerd" {
		fail("want one StatefulSet, flowerd; have %d", len(sets))
		return errs
	}
	ss := sets[0]
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 1 {
		fail("StatefulSet/flowerd: replicas must be 1: Badger is single-writer, one trainer owns the store")
	}
	pod := ss.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		fail("StatefulSet/flowerd: want one container, have %d", len(pod.Containers))
		return errs
	}
	c := pod.Containers[0]
	where := "StatefulSet/flowerd: container " + c.Name

	// Names resolve to objects of this output.
	if svc := services[ss.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		fail("StatefulSet/flowerd: serviceName %q is not a headless Service of this kustomization", ss.Spec.ServiceName)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if pvc := v.PersistentVolumeClaim; pvc != nil && !claims[pvc.ClaimName] {
			fail("StatefulSet/flowerd: volume %s: claim %q is not in this kustomization", v.Name, pvc.ClaimName)
		}
	}
	for _, t := range ss.Spec.VolumeClaimTemplates {
		volumes[t.Name] = true
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if !volumes[m.Name] {
			fail("%s: mount %s: no volume %q", where, m.MountPath, m.Name)
		}
	}
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		cm := configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			fail("%s: envFrom: no ConfigMap %q in this kustomization", where, from.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for name := range env {
		if errs := validation.IsEnvVarName(name); len(errs) > 0 {
			fail("%s: env %s: %s", where, name, strings.Join(errs, "; "))
		}
		if serverEnv.MatchString(name) && !known[name] && !sdkEnv[name] {
			fail("%s: env %s: cmd/flowerd reads no such variable", where, name)
		}
	}

	// The server's port, and the probes on it.
	var port int32
	for _, p := range c.Ports {
		if p.Name == "grpc" {
			port = p.ContainerPort
		}
	}
	if port != grpcPort {
		fail("%s: want a port named grpc, %d; have %d", where, grpcPort, port)
	}
	if addr := env["FLOWERD_ADDR"]; !strings.HasSuffix(addr, fmt.Sprintf(":%d", grpcPort)) || strings.HasPrefix(addr, "localhost") || strings.HasPrefix(addr, "127.") {
		fail("%s: FLOWERD_ADDR=%q: the server must listen on all interfaces, port %d, for the kubelet's probes", where, addr, grpcPort)
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}}
	for _, pr := range probes {
		name, p := pr.name, pr.probe
		switch {
		case p == nil || p.GRPC == nil:
			fail("%s: %s must be a grpc probe", where, name)
		case p.GRPC.Port != grpcPort:
			fail("%s: %s: port %d, want %d", where, name, p.GRPC.Port, grpcPort)
		case p.GRPC.Service != nil && *p.GRPC.Service != "":
			fail("%s: %s: service %q: the overall status (\"\") is the one that means all variants have loaded", where, name, *p.GRPC.Service)
		}
	}
	for _, svc := range services {
		for k, v := range svc.Spec.Selector {
			if ss.Spec.Template.Labels[k] != v {
				fail("Service/%s: selector %s=%s matches no label of the pod", svc.Name, k, v)
			}
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.String() != "grpc" && p.TargetPort.IntValue() != grpcPort {
				fail("Service/%s: port %s: targetPort %s is not the server's", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}

	// Store and dataset where flowerd.env says.
	if m, ok := mounts[env["FLOWERD_DATA_DIR"]]; !ok || m.ReadOnly {
		fail("%s: FLOWERD_DATA_DIR=%q is not a writable volume mount", where, env["FLOWERD_DATA_DIR"])
	}
	if m, ok := mounts[env["FLOWERD_DATASET"]]; !ok || !m.ReadOnly {
		fail("%s: FLOWERD_DATASET=%q is not a read-only volume mount", where, env["FLOWERD_DATASET"])
	}

	// Shutdown fits in the grace period.
	timeout, err := time.ParseDuration(env["FLOWERD_SHUTDOWN_TIMEOUT"])
	if err != nil {
		fail("%s: FLOWERD_SHUTDOWN_TIMEOUT: %v", where, err)
	} else if pod.TerminationGracePeriodSeconds == nil ||
		time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second < timeout+telemetryFlush+closeMargin {
		fail("StatefulSet/flowerd: terminationGracePeriodSeconds must be at least FLOWERD_SHUTDOWN_TIMEOUT (%v) + %v telemetry flush + %v to close the store", timeout, telemetryFlush, closeMargin)
	}

	// Locked down.
	psc, sc := pod.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		fail("StatefulSet/flowerd: the pod must run as a numeric non-root user (runAsNonRoot, runAsUser)")
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
		fail("%s: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", where)
	}

	// CPU or GPU.
	gpus := c.Resources.Limits["nvidia.com/gpu"]
	backend := env["GOMLX_BACKEND"]
	if gpu {
		if gpus.Value() != 1 {
			fail("%s: the GPU overlay must limit nvidia.com/gpu to 1, has %s", where, gpus.String())
		}
		if !strings.HasPrefix(backend, "xla:/") {
			fail("%s: GOMLX_BACKEND=%q: the GPU overlay needs xla:/path/to/pjrt_plugin.so", where, backend)
		}
		if !strings.HasSuffix(c.Image, ":gpu") {
			fail("%s: image %s: want the GPU image", where, c.Image)
		}
	} else {
		if !gpus.IsZero() {
			fail("%s: requests a GPU outside the GPU overlay", where)
		}
		if backend != "go" {
			fail("%s: GOMLX_BACKEND=%q on CPU, want go", where, backend)
		}
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		fail("%s: want memory requests and limits", where)
	}
	return errs
}
