package validate

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCatchesBrokenManifests breaks the rendered base StatefulSet in the
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
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string // in one of the errors
	}{
		{"misspelt field", func(m map[string]any) {
			p := dig(container(m), "livenessProbe", "grpc").(map[string]any)
			p["prot"] = p["port"]
			delete(p, "port")
		}, `unknown field "prot"`},
		{"field at the wrong level", func(m map[string]any) {
			dig(m, "spec", "template", "spec", "securityContext").(map[string]any)["readOnlyRootFilesystem"] = true
		}, `unknown field "readOnlyRootFilesystem"`},
		{"missing required field", func(m map[string]any) {
			delete(container(m), "name")
		}, `missing required field "name"`},
		{"wrong type", func(m map[string]any) {
			m["spec"].(map[string]any)["replicas"] = "one"
		}, "string, want integer"},
		{"out of range", func(m map[string]any) {
			container(m)["ports"].([]any)[0].(map[string]any)["containerPort"] = json.Number("5000000000")
		}, "does not fit in an int32"},
		{"malformed quantity", func(m map[string]any) {
			dig(container(m), "resources", "limits").(map[string]any)["memory"] = "16 GB"
		}, "quantities must match"},
		{"a flag that does not exist", func(m map[string]any) {
			c := container(m)
			c["env"] = append(c["env"].([]any), map[string]any{"name": "FLOWERD_READ_ONLY", "value": "true"})
		}, "cmd/flowerd reads no such variable"},
		{"two trainers", func(m map[string]any) {
			m["spec"].(map[string]any)["replicas"] = json.Number("2")
		}, "replicas must be 1"},
		{"probe on another port", func(m map[string]any) {
			dig(container(m), "readinessProbe", "grpc").(map[string]any)["port"] = json.Number("8080")
		}, "readinessProbe: port 8080"},
		{"writable root", func(m map[string]any) {
			dig(container(m), "securityContext").(map[string]any)["readOnlyRootFilesystem"] = false
		}, "want readOnlyRootFilesystem"},
		{"grace period shorter than the shutdown", func(m map[string]any) {
			dig(m, "spec", "template", "spec").(map[string]any)["terminationGracePeriodSeconds"] = json.Number("30")
		}, "terminationGracePeriodSeconds must be at least"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := make([]object, len(base))
			copy(objs, base)
			for i, o := range objs {
				if o.gvk.Kind != "StatefulSet" {
					continue
				}
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
			var errs []string
			for i := range objs {
				errs = append(errs, checkObject(api, &objs[i])...)
			}
			if len(errs) == 0 {
				errs = checkTrainer(objs, known, false)
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

// dig returns m[k0][k1]...
func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	return v
}
