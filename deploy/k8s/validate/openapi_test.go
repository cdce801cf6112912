package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The OpenAPI v3 documents of the built-in kinds come from the
// k8s.io/kubernetes module, whose zip holds them under api/openapi-spec/v3.
// Its version matches k8s.io/api in go.mod; the hash is the one `go mod
// download -json` reports (and sum.golang.org records) for it.
const (
	kubernetesModule    = "k8s.io/kubernetes@v1.37.2"
	kubernetesModuleSum = "h1:A2VDEiObzkYqFTKhSsn0ZEb0RlLEXpHWj93gi2HqEwE="
)

// openAPIDocs are the group-versions the manifests use.
var openAPIDocs = []string{
	"api__v1_openapi.json", "apis__apps__v1_openapi.json",
	"apis__policy__v1_openapi.json", "apis__autoscaling__v2_openapi.json",
}

// openAPI is the schemas of some Kubernetes group-versions.
type openAPI struct {
	schemas map[string]map[string]any          // components.schemas, by name
	kinds   map[schema.GroupVersionKind]string // the schema of each top-level kind
}

var loadOpenAPI = sync.OnceValues(func() (*openAPI, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", "mod", "download", "-json", kubernetesModule)
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var mod struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Error != "" || runErr != nil {
		return nil, fmt.Errorf("go mod download %s: %v %s %s", kubernetesModule, runErr, mod.Error, stderr.String())
	}
	if mod.Sum != kubernetesModuleSum {
		return nil, fmt.Errorf("go mod download %s: hash %s, want %s", kubernetesModule, mod.Sum, kubernetesModuleSum)
	}
	api := &openAPI{schemas: map[string]map[string]any{}, kinds: map[schema.GroupVersionKind]string{}}
	for _, name := range openAPIDocs {
		data, err := os.ReadFile(filepath.Join(mod.Dir, "api", "openapi-spec", "v3", name))
		if err != nil {
			return nil, fmt.Errorf("read OpenAPI document: %w", err)
		}
		var doc struct {
			Components struct {
				Schemas map[string]map[string]any `json:"schemas"`
			} `json:"components"`
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("decode OpenAPI document %s: %w", name, err)
		}
		for sname, s := range doc.Components.Schemas {
			api.schemas[sname] = s
			gvks, _ := s["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				g, _ := g.(map[string]any)
				gvk := schema.GroupVersionKind{Group: str(g["group"]), Version: str(g["version"]), Kind: str(g["kind"])}
				api.kinds[gvk] = sname
			}
		}
	}
	return api, nil
})

func str(v any) string { s, _ := v.(string); return s }

// validate returns what is wrong with obj, a decoded JSON object (numbers
// as json.Number) of kind gvk.
func (api *openAPI) validate(gvk schema.GroupVersionKind, obj map[string]any) []string {
	name, ok := api.kinds[gvk]
	if !ok {
		return []string{fmt.Sprintf("no schema for %s (add its group-version to openAPIDocs)", gvk)}
	}
	var errs []string
	api.check(gvk.Kind, obj, api.schemas[name], &errs)
	return errs
}

// check appends to errs what is wrong with v, at path, against the schema s.
// It understands what Kubernetes' own documents use: $ref, allOf, oneOf,
// type, properties, additionalProperties, required, items, enum, int32,
// and x-kubernetes-preserve-unknown-fields. An object schema with
// properties accepts no other fields, as the API server with
// fieldValidation=Strict does.
func (api *openAPI) check(path string, v any, s map[string]any, errs *[]string) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, path+": "+fmt.Sprintf(format, args...))
	}
	if ref, ok := s["$ref"].(string); ok {
		sub, ok := api.schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if !ok {
			fail("schema %s not found", ref)
			return
		}
		api.check(path, v, sub, errs)
		return
	}
	for _, sub := range schemaList(s["allOf"]) {
		api.check(path, v, sub, errs)
	}
	if alts := schemaList(s["oneOf"]); len(alts) > 0 {
		matched := slices.ContainsFunc(alts, func(alt map[string]any) bool {
			var e []string
			api.check(path, v, alt, &e)
			return len(e) == 0
		})
		if !matched {
			fail("%s matches none of the types allowed here", jsonType(v))
		}
	}
	if v == nil {
		return // null: the API server reads it as unset
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		fail("%v is not one of %v", v, enum)
	}
	typ, _ := s["type"].(string)
	if typ != "" && typ != jsonType(v) && !(typ == "number" && jsonType(v) == "integer") {
		fail("%s, want %s", jsonType(v), typ)
		return
	}
	switch typ {
	case "object":
		m := v.(map[string]any)
		props, _ := s["properties"].(map[string]any)
		extra, _ := s["additionalProperties"].(map[string]any)
		open := s["additionalProperties"] == true || s["x-kubernetes-preserve-unknown-fields"] == true || props == nil
		for _, k := range sortedKeys(m) {
			switch sub, _ := props[k].(map[string]any); {
			case sub != nil:
				api.check(path+"."+k, m[k], sub, errs)
			case extra != nil:
				api.check(path+"."+k, m[k], extra, errs)
			case !open:
				fail("unknown field %q", k)
			}
		}
		required, _ := s["required"].([]any)
		for _, r := range required {
			if m[str(r)] == nil {
				fail("missing required field %q", str(r))
			}
		}
	case "array":
		items, _ := s["items"].(map[string]any)
		for i, e := range v.([]any) {
			if items != nil {
				api.check(fmt.Sprintf("%s[%d]", path, i), e, items, errs)
			}
		}
	case "integer":
		if s["format"] == "int32" {
			if n, _ := v.(json.Number).Int64(); n < math.MinInt32 || n > math.MaxInt32 {
				fail("%v does not fit in an int32", v)
			}
		}
	}
}

// schemaList returns the schemas of an allOf or oneOf.
func schemaList(v any) []map[string]any {
	var out []map[string]any
	l, _ := v.([]any)
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// jsonType names the JSON type of v as OpenAPI does.
func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
