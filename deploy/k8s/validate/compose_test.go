package validate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeFile is deploy/docker-compose.yml, relative to this folder. Paths
// in it are relative to deploy/, the compose file's folder.
const composeFile = "../../docker-compose.yml"

var composeDir = filepath.Dir(composeFile)

// composeServices are the services issue 7 asks for: the server, Jaeger and
// the one-shot job that trains every variant.
var composeServices = []string{"flowerd", "jaeger", "train-all"}

// Keys of the Compose specification (compose-spec.io) that these files may
// use; an x- prefix is an extension. A key outside them is a typo that
// Compose would reject.
var (
	composeTopKeys     = keySet("version name services networks volumes configs secrets")
	composeServiceKeys = keySet("build image command entrypoint environment env_file ports expose volumes " +
		"depends_on healthcheck profiles restart user working_dir networks labels container_name init " +
		"stop_grace_period stop_signal deploy read_only tmpfs ulimits cap_add cap_drop security_opt " +
		"shm_size logging extra_hosts hostname platform pull_policy runtime gpus devices")
)

func keySet(s string) map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(s) {
		m[k] = true
	}
	return m
}

type compose struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image       string          `json:"image"`
	Build       json.RawMessage `json:"build"`       // a context path, or {context, dockerfile}
	Environment json.RawMessage `json:"environment"` // a map, or a list of NAME=value
	DependsOn   json.RawMessage `json:"depends_on"`  // a list, or a map to {condition}
	Ports       []string        `json:"ports"`
	Volumes     []string        `json:"volumes"`
	Command     []string        `json:"command"`
	Healthcheck map[string]any  `json:"healthcheck"`
}

// TestCompose checks deploy/docker-compose.yml offline: it is YAML with no
// duplicate keys and only Compose's keys, it has the three services, their
// builds and dependencies resolve, flowerd is given only variables
// cmd/flowerd reads and the volumes its image's environment names, and the
// training job calls an RPC that exists with fields its request has. Where
// `docker compose` is installed, `docker compose config` checks it too.
func TestCompose(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	known, err := flowerdEnv()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range checkCompose(raw, known) {
		t.Errorf("%s: %s", composeFile, e)
	}

	t.Run("docker compose config", func(t *testing.T) {
		if exec.Command("docker", "compose", "version").Run() != nil {
			t.Skip("docker compose is not installed: checked as YAML only")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "compose", "-f", composeFile, "config", "-q").CombinedOutput()
		if err != nil {
			t.Errorf("docker compose -f %s config: %v\n%s", composeFile, err, out)
		}
	})
}

// TestComposeCatchesBroken breaks the compose file in the ways hand-written
// YAML goes wrong and checks that checkCompose says so.
func TestComposeCatchesBroken(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	known, err := flowerdEnv()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, old, new string
		want           string // in one of the errors
	}{
		{"not YAML", "services:", "services: [", "yaml"},
		{"duplicate key", "    image: jaegertracing", "    image: x\n    image: jaegertracing", `key "image" already set`},
		{"healthy without a healthcheck", "build:\n      context: ..\n      dockerfile: deploy/Dockerfile", "image: flowerd:cpu", "flowerd is waited on until healthy, but has no healthcheck"},
		{"misspelt key", "    environment:\n      OTEL_EXPORTER", "    enviroment:\n      OTEL_EXPORTER", `unknown key "enviroment"`},
		{"missing service", "  train-all:", "  train-every:", `no service "train-all"`},
		{"variable the server does not read", "OTEL_SERVICE_NAME: flowerd", "OTEL_SERVICE_NAME: flowerd\n      FLOWERD_DATADIR: /data", "FLOWERD_DATADIR: cmd/flowerd reads no such variable"},
		{"no such build context", "context: ..", "context: ../nowhere", "context"},
		{"no such dockerfile", "dockerfile: deploy/Dockerfile", "dockerfile: deploy/Dockerfile.cpu", "Dockerfile.cpu"},
		{"endpoint not a service", "http://jaeger:4317", "http://tempo:4317", `no service "tempo"`},
		{"dataset not mounted", ":/data/flowers17:ro", ":/data/flowers:ro", "FLOWERD_DATASET"},
		{"dataset writable", ":/data/flowers17:ro", ":/data/flowers17", "FLOWERD_DATASET"},
		{"undeclared volume", "- store:/data/store", "- stor:/data/store", "stor is not declared"},
		{"no such rpc", "FlowerdService/Train", "FlowerdService/TrainAll", "no such rpc"},
		{"no such field", `\"epochs\":30`, `\"epoch\":30`, `no field "epoch"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(raw, []byte(tc.old)) {
				t.Fatalf("%s has no %q to break", composeFile, tc.old)
			}
			broken := bytes.Replace(raw, []byte(tc.old), []byte(tc.new), 1)
			errs := checkCompose(broken, known)
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
				t.Errorf("checkCompose(%s) = %q; want an error containing %q", tc.name, errs, tc.want)
			}
		})
	}
}

// checkCompose checks a compose file's text.
func checkCompose(raw []byte, known map[string]bool) []string {
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return []string{err.Error()}
	}
	js = []byte(interpolate(string(js)))
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return []string{err.Error()}
	}
	var errs []string
	for k := range top {
		if !composeTopKeys[k] && !strings.HasPrefix(k, "x-") {
			errs = append(errs, fmt.Sprintf("unknown top-level key %q", k))
		}
	}
	var services map[string]map[string]json.RawMessage
	if err := json.Unmarshal(top["services"], &services); err != nil {
		return append(errs, fmt.Sprintf("services: %v", err))
	}
	for _, name := range slices.Sorted(maps.Keys(services)) {
		for _, k := range slices.Sorted(maps.Keys(services[name])) {
			if !composeServiceKeys[k] && !strings.HasPrefix(k, "x-") {
				errs = append(errs, fmt.Sprintf("service %s: unknown key %q", name, k))
			}
		}
	}
	var c compose
	if err := json.Unmarshal(js, &c); err != nil {
		return append(errs, err.Error())
	}
	for _, name := range composeServices {
		if _, ok := c.Services[name]; !ok {
			errs = append(errs, fmt.Sprintf("no service %q", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		for _, e := range checkComposeService(&c, name, known) {
			errs = append(errs, fmt.Sprintf("service %s: %s", name, e))
		}
	}
	return errs
}

// interpolation matches ${NAME}, ${NAME:-default} and ${NAME-default}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolate replaces each variable with its default, as Compose does when
// the variable is unset (the test does not read this machine's environment).
func interpolate(s string) string {
	return interpolation.ReplaceAllString(s, "$2")
}

// checkComposeService checks one service against the others and, for
// flowerd, against what the server reads.
func checkComposeService(c *compose, name string, known map[string]bool) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	s := c.Services[name]

	// What runs: an image, or a build whose context and Dockerfile exist.
	var dockerfile string
	if len(s.Build) > 0 {
		ctxDir, df, err := buildPaths(s.Build)
		if err != nil {
			fail("build: %v", err)
		}
		if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
			fail("build: context %s is not a folder", ctxDir)
		}
		if fi, err := os.Stat(df); err != nil || !fi.Mode().IsRegular() {
			fail("build: dockerfile %s is not a file", df)
		} else {
			dockerfile = df
		}
	} else if s.Image == "" {
		fail("neither image nor build")
	}

	// Dependencies exist; one waited on until healthy has a health check.
	deps := map[string]string{} // service -> condition
	if len(s.DependsOn) > 0 {
		var list []string
		var m map[string]struct {
			Condition string `json:"condition"`
		}
		if json.Unmarshal(s.DependsOn, &list) == nil {
			for _, d := range list {
				deps[d] = ""
			}
		} else if err := json.Unmarshal(s.DependsOn, &m); err != nil {
			fail("depends_on: %v", err)
		} else {
			for d, v := range m {
				deps[d] = v.Condition
			}
		}
	}
	for d, cond := range deps {
		if _, ok := c.Services[d]; !ok {
			fail("depends_on: no service %q", d)
			continue
		}
		if cond == "service_healthy" && !hasHealthcheck(c.Services[d]) {
			fail("depends_on: %s is waited on until healthy, but has no healthcheck (in the file or its Dockerfile)", d)
		}
	}

	// Named volumes are declared.
	mounts := map[string]bool{} // target -> read-only
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue // an anonymous volume
		}
		src, target := parts[0], parts[1]
		mounts[target] = len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
		if !strings.ContainsAny(src, "/.~") {
			if _, ok := c.Volumes[src]; !ok {
				fail("volume %q: %s is not declared under volumes", v, src)
			}
		}
	}

	if name == "flowerd" {
		env := dockerfileEnv(dockerfile)
		for k, v := range composeEnv(s.Environment, fail) {
			env[k] = v
			if serverEnv.MatchString(k) && !known[k] && !sdkEnv[k] {
				fail("environment: %s: cmd/flowerd reads no such variable", k)
			}
		}
		for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
			if v := env[k]; v != "" {
				u, err := url.Parse(v)
				if err != nil || u.Hostname() == "" {
					fail("environment: %s=%q is not a URL", k, v)
				} else if _, ok := c.Services[u.Hostname()]; !ok && u.Hostname() != "localhost" {
					fail("environment: %s=%q: no service %q", k, v, u.Hostname())
				}
			}
		}
		if ro, ok := mounts[env["FLOWERD_DATA_DIR"]]; !ok || ro {
			fail("FLOWERD_DATA_DIR=%q is not a writable volume", env["FLOWERD_DATA_DIR"])
		}
		if ro, ok := mounts[env["FLOWERD_DATASET"]]; !ok || !ro {
			fail("FLOWERD_DATASET=%q is not a read-only volume", env["FLOWERD_DATASET"])
		}
		if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, fmt.Sprintf(":%d", grpcPort)) }) {
			fail("ports %q do not publish the gRPC port %d", s.Ports, grpcPort)
		}
	}

	if len(s.Command) > 0 && strings.Contains(s.Image, "grpcurl") {
		if err := checkGRPCurl(s.Command, c); err != nil {
			fail("command: %v", err)
		}
	}
	return errs
}

// composeEnv returns a service's environment, given as a map or a list.
func composeEnv(raw json.RawMessage, fail func(string, ...any)) map[string]string {
	env := map[string]string{}
	if len(raw) == 0 {
		return env
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		return env
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		fail("environment: %v", err)
		return env
	}
	for k, v := range m {
		if _, ok := v.(string); !ok && v != nil {
			fail("environment: %s: quote the value %v: Compose wants a string", k, v)
		}
		env[k] = fmt.Sprint(v)
	}
	return env
}

// dockerfileEnv returns the NAME=value pairs of a Dockerfile's ENV lines.
func dockerfileEnv(dockerfile string) map[string]string {
	env := map[string]string{}
	if dockerfile == "" {
		return env
	}
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		return env
	}
	src := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(src, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.EqualFold(f[0], "ENV") {
			continue
		}
		for _, kv := range f[1:] {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// buildPaths returns the context folder and the Dockerfile of a build,
// given as a context path or as {context, dockerfile}.
func buildPaths(raw json.RawMessage) (ctxDir, dockerfile string, err error) {
	b := struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	}{Context: ".", Dockerfile: "Dockerfile"}
	if json.Unmarshal(raw, &b.Context) != nil {
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", "", err
		}
	}
	ctxDir = filepath.Join(composeDir, b.Context)
	return ctxDir, filepath.Join(ctxDir, b.Dockerfile), nil
}

// hasHealthcheck reports whether a service has a health check, in the
// compose file or as its Dockerfile's HEALTHCHECK.
func hasHealthcheck(s composeService) bool {
	if len(s.Healthcheck) > 0 {
		return s.Healthcheck["disable"] != true
	}
	if len(s.Build) == 0 {
		return false // an image's own HEALTHCHECK cannot be seen from here
	}
	_, dockerfile, err := buildPaths(s.Build)
	if err != nil {
		return false
	}
	src, err := os.ReadFile(dockerfile)
	src = bytes.ReplaceAll(src, []byte("\\\n"), []byte(" ")) // join continued lines
	return err == nil && regexp.MustCompile(`(?m)^HEALTHCHECK\s+(?:--\S+\s+)*CMD\s`).Match(src)
}

// checkGRPCurl checks a grpcurl command line: its method is an RPC of the
// proto, its target a service, and its -d JSON names fields of the request.
func checkGRPCurl(args []string, c *compose) error {
	var data, target, method string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-d" && i+1 < len(args):
			data = args[i+1]
			i++
		case strings.HasPrefix(a, "-"):
		case target == "":
			target = a
		default:
			method = a
		}
	}
	host, _, _ := strings.Cut(target, ":")
	if _, ok := c.Services[host]; !ok {
		return fmt.Errorf("target %q is not a service", target)
	}
	svc, rpc, ok := strings.Cut(method, "/")
	if !ok || !strings.HasPrefix(svc, "flowerd.v1.") {
		return fmt.Errorf("method %q is not flowerd.v1.SERVICE/METHOD", method)
	}
	proto, err := os.ReadFile("../../../pb/flowerd/v1/flowerd.proto")
	if err != nil {
		return err
	}
	body := protoBlock(string(proto), "service "+strings.TrimPrefix(svc, "flowerd.v1."))
	m := regexp.MustCompile(`rpc\s+` + regexp.QuoteMeta(rpc) + `\s*\(\s*(\w+)\s*\)`).FindStringSubmatch(body)
	if m == nil {
		return fmt.Errorf("method %q: no such rpc in pb/flowerd/v1/flowerd.proto", method)
	}
	fields := map[string]bool{}
	for _, f := range regexp.MustCompile(`(?m)^\s*(?:repeated\s+|optional\s+)?[\w.]+\s+(\w+)\s*=\s*\d+`).FindAllStringSubmatch(protoBlock(string(proto), "message "+m[1]), -1) {
		fields[f[1]] = true
		fields[lowerCamel(f[1])] = true
	}
	if data == "" {
		return nil
	}
	var req map[string]any
	if err := json.Unmarshal([]byte(data), &req); err != nil {
		return fmt.Errorf("-d %s: %v", data, err)
	}
	for k := range req {
		if !fields[k] {
			return fmt.Errorf("-d %s: %s has no field %q", data, m[1], k)
		}
	}
	return nil
}

// protoBlock returns the body of the top-level block that starts with head
// ("message X", "service Y"), or "".
func protoBlock(src, head string) string {
	i := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(head) + `\s*\{`).FindStringIndex(src)
	if i == nil {
		return ""
	}
	depth := 0
	for j := i[1] - 1; j < len(src); j++ {
		switch src[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return src[i[1]:j]
			}
		}
	}
	return ""
}

func lowerCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}
