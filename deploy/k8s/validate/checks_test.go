package validate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The two workloads: the trainer, which owns the store and exports each
// served version, and the read-only serving replicas that follow it.
const (
	trainerName = "StatefulSet/flowerd"
	servingName = "Deployment/flowerd-serving"
)

// workload is the pod template of the trainer or of the serving replicas.
type workload struct {
	where     string // Kind/name
	labels    map[string]string
	pod       corev1.PodSpec
	templates map[string]bool // volume claim templates (StatefulSet)
	replicas  int32

	// Set by checkPod.
	c      corev1.Container
	env    map[string]string
	mounts map[string]corev1.VolumeMount // by mount path
	claims map[string]string             // volume name -> claim name
}

// selects reports whether selector matches the workload's pod labels.
func (w *workload) selects(selector map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if w.labels[k] != v {
			return false
		}
	}
	return true
}

// checkFlowerd checks the rendered objects against what flowerd needs.
func checkFlowerd(objs []object, known map[string]bool, gpu bool) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	configMaps := map[string]*corev1.ConfigMap{}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	services := map[string]*corev1.Service{}
	var sets []*appsv1.StatefulSet
	var deployments []*appsv1.Deployment
	var pdbs []*policyv1.PodDisruptionBudget
	var hpas []*autoscalingv2.HorizontalPodAutoscaler
	for _, o := range objs {
		if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
			fail("%s: name: %s", o, strings.Join(errs, "; "))
		}
		switch obj := o.obj.(type) {
		case *corev1.ConfigMap:
			configMaps[obj.Name] = obj
		case *corev1.PersistentVolumeClaim:
			claims[obj.Name] = obj
		case *corev1.Service:
			services[obj.Name] = obj
		case *appsv1.StatefulSet:
			sets = append(sets, obj)
		case *appsv1.Deployment:
			deployments = append(deployments, obj)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, obj)
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas = append(hpas, obj)
		}
	}
	if len(sets) != 1 || sets[0].Name != "flowerd" {
		fail("want one StatefulSet, flowerd (the trainer); have %d", len(sets))
		return errs
	}
	if len(deployments) != 1 || deployments[0].Name != "flowerd-serving" {
		fail("want one Deployment, flowerd-serving (the serving replicas); have %d", len(deployments))
		return errs
	}
	ss, dep := sets[0], deployments[0]
	trainer := &workload{where: trainerName, labels: ss.Spec.Template.Labels, pod: ss.Spec.Template.Spec, templates: map[string]bool{}}
	for _, t := range ss.Spec.VolumeClaimTemplates {
		trainer.templates[t.Name] = true
	}
	serving := &workload{where: servingName, labels: dep.Spec.Template.Labels, pod: dep.Spec.Template.Spec}

	// Only the trainer is limited to one replica: Badger is single-writer.
	// The replicas keep nothing and scale freely.
	if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 1 {
		fail("%s: replicas must be 1: Badger is single-writer, one trainer owns the store", trainerName)
	}
	trainer.replicas = 1
	serving.replicas = 1 // the API server's default
	if dep.Spec.Replicas != nil {
		serving.replicas = *dep.Spec.Replicas
	}
	if svc := services[ss.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		fail("%s: serviceName %q is not a headless Service of this kustomization", trainerName, ss.Spec.ServiceName)
	}
	if trainer.selects(serving.labels) || serving.selects(trainer.labels) {
		fail("%s and %s: their pods' labels must tell them apart (app.kubernetes.io/component)", trainerName, servingName)
	}
	for _, w := range []*workload{trainer, serving} {
		errs = append(errs, checkPod(w, configMaps, claims, known)...)
	}
	if len(trainer.env) == 0 || len(serving.env) == 0 {
		return errs // one container each, or nothing more to check
	}

	// The trainer exports to a ReadWriteMany claim, read-write; the replicas
	// follow the same claim, read-only.
	exportClaim := ""
	if dir := trainer.env["FLOWERD_EXPORT_DIR"]; dir == "" {
		fail("%s: FLOWERD_EXPORT_DIR is not set: the serving replicas follow what the trainer exports", trainerName)
	} else if m, ok := trainer.mounts[dir]; !ok || m.ReadOnly || trainer.claims[m.Name] == "" {
		fail("%s: FLOWERD_EXPORT_DIR=%q is not a writable mount of a volume claim", trainerName, dir)
	} else {
		exportClaim = trainer.claims[m.Name]
	}
	if trainer.env["FLOWERD_FOLLOW"] != "" {
		fail("%s: FLOWERD_FOLLOW is set: the trainer would refuse to train", trainerName)
	}
	if serving.env["FLOWERD_EXPORT_DIR"] != "" {
		fail("%s: FLOWERD_EXPORT_DIR is set: a server exports (trains) or follows, not both", servingName)
	}
	if dir := serving.env["FLOWERD_FOLLOW"]; dir == "" {
		fail("%s: FLOWERD_FOLLOW is not set: the replicas would train and serve weights of their own", servingName)
	} else if m, ok := serving.mounts[dir]; !ok || !m.ReadOnly || serving.claims[m.Name] == "" {
		fail("%s: FLOWERD_FOLLOW=%q is not a read-only mount of a volume claim: only the trainer writes the export", servingName, dir)
	} else if exportClaim != "" && serving.claims[m.Name] != exportClaim {
		fail("%s: FLOWERD_FOLLOW=%q is claim %q, the trainer exports to claim %q", servingName, dir, serving.claims[m.Name], exportClaim)
	}
	if exportClaim != "" {
		if pvc := claims[exportClaim]; pvc != nil && !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
			fail("PersistentVolumeClaim/%s: accessModes %v: the export is mounted by the trainer and every serving replica, on any node; it must be ReadWriteMany", exportClaim, pvc.Spec.AccessModes)
		}
	}
	if s := serving.env["FLOWERD_FOLLOW_INTERVAL"]; s != "" {
		if d, err := time.ParseDuration(s); err != nil || d <= 0 {
			fail("%s: FLOWERD_FOLLOW_INTERVAL=%q: want a positive Go duration", servingName, s)
		}
	}

	// Services route to one kind of pod each: flowerd to the trainer (Train
	// and the other writes), flowerd-serving to the replicas.
	for _, svc := range services {
		t, s := trainer.selects(svc.Spec.Selector), serving.selects(svc.Spec.Selector)
		switch {
		case t && s:
			fail("Service/%s: selector %v routes to the trainer and the serving replicas both", svc.Name, svc.Spec.Selector)
		case !t && !s:
			fail("Service/%s: selector %v matches no pod of this kustomization", svc.Name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.String() != "grpc" && p.TargetPort.IntValue() != grpcPort {
				fail("Service/%s: port %s: targetPort %s is not the server's", svc.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if svc := services["flowerd"]; svc == nil || !trainer.selects(svc.Spec.Selector) {
		fail("Service/flowerd must route to the trainer: clients that train use it")
	}
	if svc := services["flowerd-serving"]; svc == nil || !serving.selects(svc.Spec.Selector) || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		fail("Service/flowerd-serving must be a ClusterIP Service of the serving replicas")
	}

	// Disruptions: a budget for the replicas that leaves drains possible;
	// none for the trainer (with one replica it could only block them).
	minReplicas := serving.replicas
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != dep.Name {
			fail("HorizontalPodAutoscaler/%s: scales %s/%s; only %s may scale", h.Name, ref.Kind, ref.Name, servingName)
			continue
		}
		if h.Spec.MinReplicas != nil {
			minReplicas = *h.Spec.MinReplicas
		} else {
			minReplicas = 1
		}
		for _, m := range h.Spec.Metrics {
			if m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && serving.c.Resources.Requests.Cpu().IsZero() {
				fail("HorizontalPodAutoscaler/%s: scales on CPU utilization, but %s requests no CPU", h.Name, servingName)
			}
		}
	}
	covered := false
	for _, p := range pdbs {
		var sel map[string]string
		if p.Spec.Selector != nil {
			sel = p.Spec.Selector.MatchLabels
		}
		switch {
		case trainer.selects(sel):
			fail("PodDisruptionBudget/%s: selects the trainer, whose single pod it could only keep from being drained", p.Name)
		case !serving.selects(sel):
			fail("PodDisruptionBudget/%s: selector %v matches no pod of this kustomization", p.Name, sel)
		case p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() < 1:
			fail("PodDisruptionBudget/%s: want minAvailable of at least 1 replica (a number)", p.Name)
		case int32(p.Spec.MinAvailable.IntValue()) >= minReplicas:
			fail("PodDisruptionBudget/%s: minAvailable %d with at least %d replicas blocks every drain", p.Name, p.Spec.MinAvailable.IntValue(), minReplicas)
		default:
			covered = true
		}
	}
	if !covered {
		fail("%s: want a PodDisruptionBudget that keeps one replica serving through drains", servingName)
	}

	// CPU or GPU: the trainer per overlay, the replicas always on CPU.
	tgpus := trainer.c.Resources.Limits["nvidia.com/gpu"]
	backend := trainer.env["GOMLX_BACKEND"]
	if gpu {
		if tgpus.Value() != 1 {
			fail("%s: the GPU overlay must limit nvidia.com/gpu to 1, has %s", trainer.where, tgpus.String())
		}
		if !strings.HasPrefix(backend, "xla:/") {
			fail("%s: GOMLX_BACKEND=%q: the GPU overlay needs xla:/path/to/pjrt_plugin.so", trainer.where, backend)
		}
		if !strings.HasSuffix(trainer.c.Image, ":gpu") {
			fail("%s: image %s: want the GPU image", trainer.where, trainer.c.Image)
		}
	} else {
		if !tgpus.IsZero() {
			fail("%s: requests a GPU outside the GPU overlay", trainer.where)
		}
		if backend != "go" {
			fail("%s: GOMLX_BACKEND=%q on CPU, want go", trainer.where, backend)
		}
	}
	if sgpus := serving.c.Resources.Limits["nvidia.com/gpu"]; !sgpus.IsZero() || serving.env["GOMLX_BACKEND"] != "go" || strings.HasSuffix(serving.c.Image, ":gpu") {
		fail("%s: the serving replicas run on CPU (image %s, GOMLX_BACKEND=%q, nvidia.com/gpu %s): want the CPU image and go", servingName, serving.c.Image, serving.env["GOMLX_BACKEND"], sgpus.String())
	}
	return errs
}

// checkPod checks what the trainer and the replicas have in common: one
// container, volumes and ConfigMaps that exist, only variables cmd/flowerd
// reads, the server's port and probes, a writable store, a read-only
// dataset, a grace period longer than the shutdown, the locked-down security
// context and memory sizes. It fills in w.c, w.env, w.mounts and w.claims.
func checkPod(w *workload, configMaps map[string]*corev1.ConfigMap, claims map[string]*corev1.PersistentVolumeClaim, known map[string]bool) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	pod := w.pod
	if len(pod.Containers) != 1 {
		fail("%s: want one container, have %d", w.where, len(pod.Containers))
		return errs
	}
	c := pod.Containers[0]
	where := w.where + ": container " + c.Name

	volumes := map[string]bool{}
	w.claims = map[string]string{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if pvc := v.PersistentVolumeClaim; pvc != nil {
			w.claims[v.Name] = pvc.ClaimName
			if claims[pvc.ClaimName] == nil {
				fail("%s: volume %s: claim %q is not in this kustomization", w.where, v.Name, pvc.ClaimName)
			}
		}
	}
	for name := range w.templates {
		volumes[name] = true
		w.claims[name] = name + "-<pod>"
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
	w.c, w.env, w.mounts = c, env, mounts

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

	// Store and dataset where the settings say. The replicas' store is an
	// emptyDir, but writable all the same. A replica may have no dataset.
	if m, ok := mounts[env["FLOWERD_DATA_DIR"]]; !ok || m.ReadOnly {
		fail("%s: FLOWERD_DATA_DIR=%q is not a writable volume mount", where, env["FLOWERD_DATA_DIR"])
	}
	if ds := env["FLOWERD_DATASET"]; ds != "" || w.where == trainerName {
		if m, ok := mounts[ds]; !ok || !m.ReadOnly {
			fail("%s: FLOWERD_DATASET=%q is not a read-only volume mount", where, ds)
		}
	}

	// Shutdown fits in the grace period, after the preStop pause if any.
	timeout, err := time.ParseDuration(env["FLOWERD_SHUTDOWN_TIMEOUT"])
	var pause time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		pause = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	}
	if err != nil {
		fail("%s: FLOWERD_SHUTDOWN_TIMEOUT: %v", where, err)
	} else if pod.TerminationGracePeriodSeconds == nil ||
		time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second < pause+timeout+telemetryFlush+closeMargin {
		fail("%s: terminationGracePeriodSeconds must be at least the preStop pause (%v) + FLOWERD_SHUTDOWN_TIMEOUT (%v) + %v telemetry flush + %v to close the store", w.where, pause, timeout, telemetryFlush, closeMargin)
	}

	// Locked down.
	psc, sc := pod.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0:
		fail("%s: the pod must run as a numeric non-root user (runAsNonRoot, runAsUser)", w.where)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		fail("%s: the pod must use the RuntimeDefault seccomp profile", w.where)
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
		fail("%s: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", where)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		fail("%s: automountServiceAccountToken must be false: the server never talks to the API", w.where)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		fail("%s: enableServiceLinks must be false: service links add FLOWERD_* variables", w.where)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		fail("%s: want memory requests and limits", where)
	}
	return errs
}
