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
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
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
	utilruntime.Must(policyv1.AddToScheme(s))
	utilruntime.Must(autoscalingv2.AddToScheme(s))
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
			for _, e := range checkFlowerd(objs, known, strings.HasSuffix(dir, "gpu")) {
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
