package validate

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCatchesBrokenManifests breaks the rendered base (the trainer's
// StatefulSet, the serving Deployment and the objects around them) in the
// ways hand-written YAML goes wrong and checks that validation says so.
func TestCatchesBrokenManifests(t *testing.T) {
	api, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	known, err := flowerdEnv()
	if err != nil {
		t.Fatal(err)
	}
	base := render(t, "base")
	container := func(m map[string]any) map[string]any {
		return dig(m, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
	}
	// mount returns the container's mount at path.
	mount := func(m map[string]any, path string) map[string]any {
		for _, v := range container(m)["volumeMounts"].([]any) {
			if v := v.(map[string]any); v["mountPath"] == path {
				return v
			}
		}
		panic("no mount at " + path)
	}
	addEnv := func(m map[string]any, name, value string) {
		c := container(m)
		c["env"] = append(c["env"].([]any), map[string]any{"name": name, "value": value})
	}
	tests := []struct {
		name   string
		target string // Kind/name of the object to break; "" is the trainer
		mutate func(m map[string]any)
		want   string // in one of the errors; "" wants none
	}{
		{"misspelt field", "", func(m map[string]any) {
			p := dig(container(m), "livenessProbe", "grpc").(map[string]any)
			p["prot"] = p["port"]
			delete(p, "port")
		}, `unknown field "prot"`},
		{"field at the wrong level", "", func(m map[string]any) {
			dig(m, "spec", "template", "spec", "securityContext").(map[string]any)["readOnlyRootFilesystem"] = true
		}, `unknown field "readOnlyRootFilesystem"`},
		{"missing required field", "", func(m map[string]any) {
			delete(container(m), "name")
		}, `missing required field "name"`},
		{"wrong type", "", func(m map[string]any) {
			m["spec"].(map[string]any)["replicas"] = "one"
		}, "string, want integer"},
		{"out of range", "", func(m map[string]any) {
			container(m)["ports"].([]any)[0].(map[string]any)["containerPort"] = json.Number("5000000000")
		}, "does not fit in an int32"},
		{"malformed quantity", "", func(m map[string]any) {
			dig(container(m), "resources", "limits").(map[string]any)["memory"] = "16 GB"
		}, "quantities must match"},
		{"a flag that does not exist", "", func(m map[string]any) {
			c := container(m)
			c["env"] = append(c["env"].([]any), map[string]any{"name": "FLOWERD_READ_ONLY", "value": "true"})
		}, "cmd/flowerd reads no such variable"},
		{"two trainers", "", func(m map[string]any) {
			m["spec"].(map[string]any)["replicas"] = json.Number("2")
		}, "replicas must be 1"},
		{"probe on another port", "", func(m map[string]any) {
			dig(container(m), "readinessProbe", "grpc").(map[string]any)["port"] = json.Number("8080")
		}, "readinessProbe: port 8080"},
		{"writable root", "", func(m map[string]any) {
			dig(container(m), "securityContext").(map[string]any)["readOnlyRootFilesystem"] = false
		}, "want readOnlyRootFilesystem"},
		{"grace period shorter than the shutdown", "", func(m map[string]any) {
			dig(m, "spec", "template", "spec").(map[string]any)["terminationGracePeriodSeconds"] = json.Number("30")
		}, "terminationGracePeriodSeconds must be at least"},

		// The serving replicas and what goes with them.
		{"more serving replicas are fine", servingName, func(m map[string]any) {
			m["spec"].(map[string]any)["replicas"] = json.Number("5")
		}, ""},
		{"misspelt field in the Deployment", servingName, func(m map[string]any) {
			p := dig(container(m), "readinessProbe", "grpc").(map[string]any)
			p["servce"] = p["service"]
			delete(p, "service")
		}, `unknown field "servce"`},
		{"follower mounts the export read-write", servingName, func(m map[string]any) {
			delete(mount(m, "/export"), "readOnly")
		}, `FLOWERD_FOLLOW="/export" is not a read-only mount`},
		{"follower without FLOWERD_FOLLOW", "ConfigMap/flowerd-serving", func(m map[string]any) {
			delete(m["data"].(map[string]any), "FLOWERD_FOLLOW")
		}, "FLOWERD_FOLLOW is not set"},
		{"follower follows an unmounted directory", servingName, func(m map[string]any) {
			addEnv(m, "FLOWERD_FOLLOW", "/data/export")
		}, `FLOWERD_FOLLOW="/data/export" is not a read-only mount`},
		{"follower exports too", servingName, func(m map[string]any) {
			addEnv(m, "FLOWERD_EXPORT_DIR", "/export")
		}, "exports (trains) or follows, not both"},
		{"follower interval not a duration", "ConfigMap/flowerd-serving", func(m map[string]any) {
			m["data"].(map[string]any)["FLOWERD_FOLLOW_INTERVAL"] = "5"
		}, "FLOWERD_FOLLOW_INTERVAL"},
		{"follower probes a variant", servingName, func(m map[string]any) {
			dig(container(m), "readinessProbe", "grpc").(map[string]any)["service"] = "model1"
		}, `readinessProbe: service "model1"`},
		{"follower probe on another port", servingName, func(m map[string]any) {
			dig(container(m), "livenessProbe", "grpc").(map[string]any)["port"] = json.Number("8080")
		}, "livenessProbe: port 8080"},
		{"follower without a grpc port", servingName, func(m map[string]any) {
			container(m)["ports"].([]any)[0].(map[string]any)["name"] = "http"
		}, "want a port named grpc"},
		{"follower runs as root", servingName, func(m map[string]any) {
			dig(m, "spec", "template", "spec", "securityContext").(map[string]any)["runAsUser"] = json.Number("0")
		}, "numeric non-root user"},
		{"follower may escalate", servingName, func(m map[string]any) {
			dig(container(m), "securityContext").(map[string]any)["allowPrivilegeEscalation"] = true
		}, "no privilege escalation"},
		{"follower grace period shorter than the shutdown", servingName, func(m map[string]any) {
			dig(m, "spec", "template", "spec").(map[string]any)["terminationGracePeriodSeconds"] = json.Number("30")
		}, "terminationGracePeriodSeconds must be at least the preStop pause (5s)"},
		{"follower on the GPU backend", "ConfigMap/flowerd-serving", func(m map[string]any) {
			m["data"].(map[string]any)["GOMLX_BACKEND"] = "xla:/usr/local/lib/xla_cuda_plugin.so"
		}, "the serving replicas run on CPU"},
		{"trainer does not export", "ConfigMap/flowerd", func(m map[string]any) {
			delete(m["data"].(map[string]any), "FLOWERD_EXPORT_DIR")
		}, "FLOWERD_EXPORT_DIR is not set"},
		{"trainer mounts the export read-only", "", func(m map[string]any) {
			mount(m, "/export")["readOnly"] = true
		}, `FLOWERD_EXPORT_DIR="/export" is not a writable mount`},
		{"trainer follows", "ConfigMap/flowerd", func(m map[string]any) {
			m["data"].(map[string]any)["FLOWERD_FOLLOW"] = "/export"
		}, "FLOWERD_FOLLOW is set"},
		{"export volume ReadWriteOnce", "PersistentVolumeClaim/flowerd-export", func(m map[string]any) {
			m["spec"].(map[string]any)["accessModes"] = []any{"ReadWriteOnce"}
		}, "it must be ReadWriteMany"},
		{"serving Service routes to the trainer", "Service/flowerd-serving", func(m map[string]any) {
			dig(m, "spec", "selector").(map[string]any)["app.kubernetes.io/component"] = "trainer"
		}, "Service/flowerd-serving must be a ClusterIP Service of the serving replicas"},
		{"trainer Service routes to both", "Service/flowerd", func(m map[string]any) {
			delete(dig(m, "spec", "selector").(map[string]any), "app.kubernetes.io/component")
		}, "routes to the trainer and the serving replicas both"},
		{"budget blocks every drain", "PodDisruptionBudget/flowerd-serving", func(m map[string]any) {
			m["spec"].(map[string]any)["minAvailable"] = json.Number("2")
		}, "blocks every drain"},
		{"budget on the trainer", "PodDisruptionBudget/flowerd-serving", func(m map[string]any) {
			dig(m, "spec", "selector", "matchLabels").(map[string]any)["app.kubernetes.io/component"] = "trainer"
		}, "selects the trainer"},
		{"autoscaler on the trainer", "HorizontalPodAutoscaler/flowerd-serving", func(m map[string]any) {
			ref := dig(m, "spec", "scaleTargetRef").(map[string]any)
			ref["kind"], ref["name"] = "StatefulSet", "flowerd"
		}, "only Deployment/flowerd-serving may scale"},
		{"autoscaler field at the wrong level", "HorizontalPodAutoscaler/flowerd-serving", func(m map[string]any) {
			m["spec"].(map[string]any)["targetCPUUtilizationPercentage"] = json.Number("70")
		}, `unknown field "targetCPUUtilizationPercentage"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := make([]object, len(base))
			copy(objs, base)
			target := tt.target
			if target == "" {
				target = trainerName
			}
			found := false
			for i, o := range objs {
				if !isObject(o, target) {
					continue
				}
				found = true
				var m map[string]any
				if err := decodeJSON(o.json, &m); err != nil {
					t.Fatal(err)
				}
				tt.mutate(m)
				data, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				objs[i].json = data
			}
			if !found {
				t.Fatalf("no %s in the rendered base", target)
			}
			var errs []string
			for i := range objs {
				errs = append(errs, checkObject(api, &objs[i])...)
			}
			if len(errs) == 0 {
				errs = checkFlowerd(objs, known, false)
			}
			if tt.want == "" {
				if len(errs) > 0 {
					t.Errorf("validate(%s) = %q; want no errors", tt.name, errs)
				}
				return
			}
			for _, e := range errs {
				if strings.Contains(e, tt.want) {
					t.Logf("%q", errs)
					return
				}
			}
			t.Errorf("validate(%s) = %q; want an error with %q", tt.name, errs, tt.want)
		})
	}
}

// isObject reports whether o is the object Kind/name; a ConfigMap's name may
// carry the generator's hash suffix.
func isObject(o object, target string) bool {
	if o.String() == target {
		return true
	}
	rest, ok := strings.CutPrefix(o.String(), target+"-")
	return ok && o.gvk.Kind == "ConfigMap" && !strings.Contains(rest, "-")
}

// dig returns m[k0][k1]...
func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	return v
}
