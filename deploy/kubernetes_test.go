package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/reportmailer/reportmailer/config"
)

const namespace = "reportmailer"

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1)
// the overlays use; decoding rejects any other field.
type scaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string `json:"type"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
			// KEDA reads metadata as strings: a YAML bool or number here
			// fails to decode, as KEDA would refuse it.
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is the part of KEDA's TriggerAuthentication the
// overlays use.
type triggerAuthentication struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		PodIdentity *struct {
			Provider      string `json:"provider"`
			RoleArn       string `json:"roleArn,omitempty"`
			IdentityOwner string `json:"identityOwner,omitempty"`
		} `json:"podIdentity"`
	} `json:"spec"`
}

// The aws-sqs-queue scaler's metadata keys, from KEDA's documentation of
// the scaler (keda.sh/docs/2.15/scalers/aws-sqs).
var sqsScalerKeys = []string{
	"queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength",
	"scaleOnInFlight", "scaleOnDelayed", "awsRegion", "awsEndpoint", "identityOwner",
}

// rendered is one overlay's output, decoded.
type rendered struct {
	overlay         string
	irsa            bool // rendered with components/irsa added
	namespaces      []corev1.Namespace
	serviceAccounts map[string]corev1.ServiceAccount
	configMaps      map[string]corev1.ConfigMap
	deployments     []appsv1.Deployment
	cronJobs        []batchv1.CronJob
	pdbs            []policyv1.PodDisruptionBudget
	scaledObjects   []scaledObject
	triggerAuths    map[string]triggerAuthentication
}

// irsaComponent is the line deploy/README.md tells an IRSA user to add to
// an overlay's kustomization.yaml.
const irsaComponent = "components:\n  - ../../components/irsa\n"

// render builds an overlay as `kubectl apply -k` would and decodes every
// object strictly into its type: a misspelt or misplaced field fails.
// With irsa, the overlay is built as deploy/README.md tells an IRSA user
// to edit it: a copy of kubernetes/ whose overlay adds components/irsa.
func render(t *testing.T, overlay string, irsa bool) *rendered {
	t.Helper()
	dir := path.Join("kubernetes", "overlays", overlay)
	fsys := filesys.MakeFsOnDisk()
	if irsa {
		fsys = filesys.MakeFsInMemory()
		err := filepath.WalkDir("kubernetes", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if p == filepath.Join(dir, "kustomization.yaml") {
				if bytes.Contains(b, []byte("components:")) {
					t.Fatalf("%s already lists components; the test appends components/irsa", p)
				}
				b = append(b, irsaComponent...)
			}
			return fsys.WriteFile("/"+filepath.ToSlash(p), b)
		})
		if err != nil {
			t.Fatal(err)
		}
		dir = "/" + dir
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		t.Fatalf("kustomize build %s (irsa %t): %v", dir, irsa, err)
	}
	name := overlay
	if irsa {
		name += "+irsa"
	}
	r := &rendered{overlay: name, irsa: irsa, serviceAccounts: map[string]corev1.ServiceAccount{}, configMaps: map[string]corev1.ConfigMap{},
		triggerAuths: map[string]triggerAuthentication{}}
	for _, res := range resMap.Resources() {
		b, err := res.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		gvk := res.GetGvk()
		where := fmt.Sprintf("%s: %s %s", dir, gvk.Kind, res.GetName())
		decode := func(wantAPIVersion string, into any) {
			if got := gvk.ApiVersion(); got != wantAPIVersion {
				t.Errorf("%s: apiVersion %s, want %s", where, got, wantAPIVersion)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(into); err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
		if gvk.Kind != "Namespace" && res.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q, want %q", where, res.GetNamespace(), namespace)
		}
		switch gvk.Kind {
		case "Namespace":
			var v corev1.Namespace
			decode("v1", &v)
			r.namespaces = append(r.namespaces, v)
		case "ServiceAccount":
			var v corev1.ServiceAccount
			decode("v1", &v)
			r.serviceAccounts[v.Name] = v
		case "ConfigMap":
			var v corev1.ConfigMap
			decode("v1", &v)
			r.configMaps[v.Name] = v
		case "Deployment":
			var v appsv1.Deployment
			decode("apps/v1", &v)
			r.deployments = append(r.deployments, v)
		case "CronJob":
			var v batchv1.CronJob
			decode("batch/v1", &v)
			r.cronJobs = append(r.cronJobs, v)
		case "PodDisruptionBudget":
			var v policyv1.PodDisruptionBudget
			decode("policy/v1", &v)
			r.pdbs = append(r.pdbs, v)
		case "ScaledObject":
			var v scaledObject
			decode("keda.sh/v1alpha1", &v)
			r.scaledObjects = append(r.scaledObjects, v)
		case "TriggerAuthentication":
			var v triggerAuthentication
			decode("keda.sh/v1alpha1", &v)
			r.triggerAuths[v.Metadata.Name] = v
		default:
			t.Errorf("%s: a kind this test does not check; add it", where)
		}
	}
	return r
}

// workload is a pod template and where it came from.
type workload struct {
	name   string
	labels map[string]string
	pod    corev1.PodSpec
}

func (r *rendered) workloads() []workload {
	var out []workload
	for _, d := range r.deployments {
		out = append(out, workload{"Deployment " + d.Name, d.Spec.Template.Labels, d.Spec.Template.Spec})
	}
	for _, c := range r.cronJobs {
		tpl := c.Spec.JobTemplate.Spec.Template
		out = append(out, workload{"CronJob " + c.Name, tpl.Labels, tpl.Spec})
	}
	return out
}

// loadedConfig is the worker's config as a container sees it.
type loadedConfig struct {
	cfg  *config.Config
	yaml map[string]any // the same file, untyped, for fields the Config type does not have yet
}

// containerConfig follows a container's -config flag to the ConfigMap
// mounted there, and loads that file with the container's REPORTMAILER_
// variables, as the worker would.
func (r *rendered) containerConfig(t *testing.T, w workload, c corev1.Container, configPath string) loadedConfig {
	t.Helper()
	where := r.overlay + ": " + w.name
	if configPath == "" {
		t.Fatalf("%s: no -config", where)
	}
	dir, file := path.Split(configPath)
	mount := findMount(c, path.Clean(dir))
	if mount == nil {
		t.Fatalf("%s: -config %s is not in a mounted volume", where, configPath)
	}
	vol := findVolume(w.pod, mount.Name)
	if vol == nil || vol.ConfigMap == nil {
		t.Fatalf("%s: -config %s: volume %q is not a ConfigMap", where, configPath, mount.Name)
	}
	cm, ok := r.configMaps[vol.ConfigMap.Name]
	if !ok {
		t.Fatalf("%s: ConfigMap %q is not in the overlay", where, vol.ConfigMap.Name)
	}
	data, ok := cm.Data[file]
	if !ok {
		t.Fatalf("%s: -config %s: ConfigMap %s has no key %q", where, configPath, cm.Name, file)
	}
	var environ []string
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "REPORTMAILER_") {
			environ = append(environ, e.Name+"="+e.Value)
		}
	}
	cfg, err := config.Parse([]byte(data), environ)
	if err != nil {
		t.Fatalf("%s: the config in ConfigMap %s: %v", where, cm.Name, err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(data), &raw); err != nil {
		t.Fatal(err)
	}
	return loadedConfig{cfg, raw}
}

func findMount(c corev1.Container, dir string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == dir {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func findVolume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i, v := range pod.Volumes {
		if v.Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func TestKubernetesOverlays(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), irsaComponent) {
		t.Errorf("deploy/README.md does not give the lines that opt in to IRSA:\n%s", irsaComponent)
	}
	tests := []struct {
		overlay string
		irsa    bool // IRSA (components/irsa added) rather than EKS Pod Identity
	}{
		{"serve", false},
		{"serve", true},
		{"drain", false},
		{"drain", true},
	}
	for _, tt := range tests {
		name := tt.overlay + "/pod-identity"
		if tt.irsa {
			name = tt.overlay + "/irsa"
		}
		t.Run(name, func(t *testing.T) {
			r := render(t, tt.overlay, tt.irsa)
			ws := r.workloads()
			if len(ws) == 0 {
				t.Fatal("no workload")
			}
			if len(r.namespaces) != 1 || r.namespaces[0].Name != namespace ||
				r.namespaces[0].Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
				t.Errorf("want the namespace %q, enforcing the restricted Pod Security Standard", namespace)
			}
			for _, w := range ws {
				checkPod(t, r, w, string(readme), string(dockerfile))
			}
			for _, d := range r.deployments {
				checkServe(t, r, d)
			}
			for _, c := range r.cronJobs {
				checkDrain(t, r, c)
			}
			checkPDBs(t, r, ws)
			checkScaledObjects(t, r)
		})
	}
}

// checkPod checks what every reportmailer pod needs: the restricted
// security context, resources, a ServiceAccount for AWS credentials, a
// command line the binary accepts, a config it accepts, and the signing
// keys where the config looks for them.
func checkPod(t *testing.T, r *rendered, w workload, readme, dockerfile string) {
	where := r.overlay + ": " + w.name
	pod := w.pod
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod must set runAsNonRoot and the RuntimeDefault seccomp profile", where)
	}
	// IRSA needs the role annotation; with EKS Pod Identity it must be
	// absent, or the SDK's chain assumes the annotated role by web
	// identity before it asks the Pod Identity agent.
	sa, ok := r.serviceAccounts[pod.ServiceAccountName]
	roleARN, annotated := sa.Annotations["eks.amazonaws.com/role-arn"]
	switch {
	case pod.ServiceAccountName == "" || !ok:
		t.Errorf("%s: ServiceAccount %q is not in the overlay: the AWS role is bound to it", where, pod.ServiceAccountName)
	case r.irsa && !strings.HasPrefix(roleARN, "arn:aws:iam::"):
		t.Errorf("%s: ServiceAccount %s has no eks.amazonaws.com/role-arn annotation for IRSA (got %q)", where, sa.Name, roleARN)
	case !r.irsa && annotated:
		t.Errorf("%s: ServiceAccount %s has eks.amazonaws.com/role-arn %q without components/irsa; with EKS Pod Identity it must not", where, sa.Name, roleARN)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", where, len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Name != "reportmailer" {
		t.Errorf("%s: container %q, want reportmailer", where, c.Name)
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: the container must set allowPrivilegeEscalation false, readOnlyRootFilesystem true and drop ALL capabilities", where)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("%s: no %s request", where, res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("%s: no %s limit", where, res)
		}
	}
	// The image's ENTRYPOINT is the binary; the manifests give args only.
	if len(c.Command) > 0 {
		t.Errorf("%s: command %q overrides the image's entrypoint", where, c.Command)
	}
	if !strings.Contains(dockerfile, `ENTRYPOINT ["/reportmailer"]`) {
		t.Error(`Dockerfile: want ENTRYPOINT ["/reportmailer"], which the manifests' args rely on`)
	}
	if c.Image == "reportmailer" || strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
		t.Errorf("%s: image %q: set a pinned tag or digest in the overlay's images", where, c.Image)
	}

	flags := parseArgs(t, where, c.Args)
	lc := r.containerConfig(t, w, c, flags["config"])
	cfg := lc.cfg

	// AWS_REGION must be the queues' region: the SDK signs for it.
	var region string
	for _, e := range c.Env {
		if e.Name == "AWS_REGION" {
			region = e.Value
		}
	}
	for _, s := range cfg.Schedules {
		if got := queueRegion(t, s.QueueURL); got != region {
			t.Errorf("%s: AWS_REGION is %q but schedule %s's queue is in %q", where, region, s.Name, got)
		}
	}

	// Each private key file is in a Secret volume, which the README
	// tells the operator to create.
	cf := cfg.Links.CloudFront
	if cf == nil {
		t.Fatalf("%s: the config signs no CloudFront links", where)
	}
	for _, k := range cf.SigningKeys() {
		if k.PrivateKeyFile == "" {
			t.Errorf("%s: key %s: use private_key_file from the Secret, not an environment variable", where, k.ID)
			continue
		}
		dir, file := path.Split(k.PrivateKeyFile)
		m := findMount(c, path.Clean(dir))
		if m == nil {
			t.Errorf("%s: key %s: %s is not in a mounted volume", where, k.ID, k.PrivateKeyFile)
			continue
		}
		v := findVolume(pod, m.Name)
		if v == nil || v.Secret == nil {
			t.Errorf("%s: key %s: %s is not in a Secret volume", where, k.ID, k.PrivateKeyFile)
			continue
		}
		if len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == file }) {
			t.Errorf("%s: key %s: Secret volume %s does not project %s", where, k.ID, m.Name, file)
		}
		if want := fmt.Sprintf("kubectl -n %s create secret generic %s", namespace, v.Secret.SecretName); !strings.Contains(readme, want) {
			t.Errorf("deploy/README.md does not say %q", want)
		}
		if want := "--from-file=" + file + "="; !strings.Contains(readme, want) {
			t.Errorf("deploy/README.md does not create the Secret key %s (%q)", file, want)
		}
	}
}

func queueRegion(t *testing.T, queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		t.Fatalf("queue URL %q: %v", queueURL, err)
	}
	parts := strings.Split(u.Hostname(), ".") // sqs.REGION.amazonaws.com
	if len(parts) < 3 || parts[0] != "sqs" {
		t.Fatalf("queue URL %q is not sqs.REGION.amazonaws.com", queueURL)
	}
	return parts[1]
}

// checkServe checks the serve Deployment's probes and scrape config.
func checkServe(t *testing.T, r *rendered, d appsv1.Deployment) {
	where := r.overlay + ": Deployment " + d.Name
	c := d.Spec.Template.Spec.Containers[0]
	flags := parseArgs(t, where, c.Args)
	if c.Args[0] != "serve" {
		t.Errorf("%s: runs %q, want serve", where, c.Args[0])
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	probePort := func(name string, p *corev1.Probe, wantPath string) int32 {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", where, name)
			return 0
		}
		if p.HTTPGet.Path != wantPath {
			t.Errorf("%s: %s probe on %s, want %s", where, name, p.HTTPGet.Path, wantPath)
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			var ok bool
			if port, ok = ports[p.HTTPGet.Port.StrVal]; !ok {
				t.Errorf("%s: %s probe port %q is not a container port", where, name, p.HTTPGet.Port.StrVal)
			}
		}
		return port
	}
	live := probePort("liveness", c.LivenessProbe, "/healthz")
	ready := probePort("readiness", c.ReadinessProbe, "/readyz")
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: no Prometheus scrape annotations for /metrics", where)
	}
	scrape, _ := strconv.Atoi(ann["prometheus.io/port"])
	if live != ready || int32(scrape) != live {
		t.Errorf("%s: liveness on %d, readiness on %d, scrape on %d: serve listens on one port", where, live, ready, scrape)
	}
	// serve listens on http.addr. Until the config has that field the
	// probes cannot pass; once it has, its port must be the probes'.
	lc := r.containerConfig(t, workload{"Deployment " + d.Name, nil, d.Spec.Template.Spec}, c, flags["config"])
	if h, ok := lc.yaml["http"].(map[string]any); ok {
		addr, _ := h["addr"].(string)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port != strconv.Itoa(int(live)) || (host != "" && host != "0.0.0.0" && host != "::") {
			t.Errorf("%s: http.addr %q must listen on all interfaces on port %d, where the kubelet probes", where, addr, live)
		}
	} else {
		t.Errorf("%s: the config has no http.addr: serve would listen on 127.0.0.1 only, and the probes on port %d would fail", where, live)
	}
	if d.Spec.Replicas != nil && len(r.scaledObjects) > 0 {
		t.Errorf("%s: sets replicas, which KEDA owns; every apply would reset it", where)
	}
}

// envRef is a $(VAR) reference in a container's args.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkDrain checks a drain CronJob against the schedule it drains.
func checkDrain(t *testing.T, r *rendered, cj batchv1.CronJob) {
	where := r.overlay + ": CronJob " + cj.Name
	job := cj.Spec.JobTemplate.Spec
	pod := job.Template.Spec
	c := pod.Containers[0]
	if c.Args[0] != "drain" {
		t.Fatalf("%s: runs %q, want drain", where, c.Args[0])
	}
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("%s: concurrencyPolicy %q, want Forbid: runs of one schedule must not overlap", where, cj.Spec.ConcurrencyPolicy)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q; podFailurePolicy needs Never", where, pod.RestartPolicy)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil && p.HTTPGet != nil {
			t.Errorf("%s: an HTTP probe, but drain has no listener", where)
		}
	}
	// Exit codes that a retry cannot fix must fail the Job at once.
	noRetry := map[int32]bool{}
	if job.PodFailurePolicy != nil {
		for _, rule := range job.PodFailurePolicy.Rules {
			if rule.Action == batchv1.PodFailurePolicyActionFailJob && rule.OnExitCodes != nil &&
				rule.OnExitCodes.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn &&
				(rule.OnExitCodes.ContainerName == nil || *rule.OnExitCodes.ContainerName == c.Name) {
				for _, v := range rule.OnExitCodes.Values {
					noRetry[v] = true
				}
			}
		}
	}
	for _, name := range []string{"ExitPartial", "ExitUsage"} {
		if code := exitCode(t, name); !noRetry[int32(code)] {
			t.Errorf("%s: podFailurePolicy retries exit code %d (%s)", where, code, name)
		}
	}

	// Kubernetes expands $(VAR) in args from the container's env, and
	// leaves an undefined one as it is.
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = envRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			for _, e := range c.Env {
				if e.Name == name && e.ValueFrom == nil {
					return e.Value
				}
			}
			t.Errorf("%s: args use %s, which the container's env does not set", where, ref)
			return ref
		})
	}
	flags := parseArgs(t, where, args)
	if gw := flags["pushgateway"]; gw != "" {
		if u, err := url.Parse(gw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			t.Errorf("%s: -pushgateway %q is not an http(s) URL without credentials", where, gw)
		}
	}
	lc := r.containerConfig(t, workload{"CronJob " + cj.Name, nil, pod}, c, flags["config"])
	s, err := lc.cfg.Schedule(flags["schedule"])
	if err != nil {
		t.Fatalf("%s: -schedule %q: %v", where, flags["schedule"], err)
	}
	// The CronJob must fire when the config says the schedule runs.
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		t.Fatal(err)
	}
	want, err := config.ParseCron(s.Cron, loc)
	if err != nil {
		t.Fatal(err)
	}
	kloc := time.UTC
	if cj.Spec.TimeZone != nil {
		if kloc, err = time.LoadLocation(*cj.Spec.TimeZone); err != nil {
			t.Fatalf("%s: timeZone: %v", where, err)
		}
	}
	got, err := config.ParseCron(cj.Spec.Schedule, kloc)
	if err != nil {
		t.Fatalf("%s: schedule %q: %v", where, cj.Spec.Schedule, err)
	}
	// From a minute boundary, so "@every 1m" lines up with "* * * * *";
	// across the DST change in Europe.
	at := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
	gt, wt := at, at
	for range 5 {
		gt, wt = got.Next(gt), want.Next(wt)
		if !gt.Equal(wt) {
			t.Errorf("%s: fires at %s; schedule %s (%q in %s) runs at %s", where, gt, s.Name, s.Cron, loc, wt)
			break
		}
	}
	// The run stops at its budget; the deadline is only the backstop.
	if job.ActiveDeadlineSeconds == nil || time.Duration(*job.ActiveDeadlineSeconds)*time.Second <= s.Budget+time.Minute {
		t.Errorf("%s: activeDeadlineSeconds must exceed the schedule's budget (%s) with a minute's margin", where, s.Budget)
	}
}

// checkPDBs checks that each PodDisruptionBudget covers the overlay's
// pods, and every pod has one.
func checkPDBs(t *testing.T, r *rendered, ws []workload) {
	for _, w := range ws {
		covered := false
		for _, pdb := range r.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil {
				t.Fatalf("%s: PodDisruptionBudget %s: %v", r.overlay, pdb.Name, err)
			}
			covered = covered || (!sel.Empty() && sel.Matches(labels.Set(w.labels)))
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects the pods of %s (labels %v)", r.overlay, w.name, w.labels)
		}
	}
}

// checkScaledObjects checks KEDA's scaler against what KEDA documents
// and what the config drains.
func checkScaledObjects(t *testing.T, r *rendered) {
	if len(r.deployments) > 0 && len(r.scaledObjects) == 0 {
		t.Errorf("%s: no KEDA ScaledObject for the Deployment", r.overlay)
	}
	for _, so := range r.scaledObjects {
		where := r.overlay + ": ScaledObject " + so.Metadata.Name
		var target *appsv1.Deployment
		for i, d := range r.deployments {
			if d.Name == so.Spec.ScaleTargetRef.Name && (so.Spec.ScaleTargetRef.Kind == "" || so.Spec.ScaleTargetRef.Kind == "Deployment") {
				target = &r.deployments[i]
			}
		}
		if target == nil {
			t.Errorf("%s: scales %s %q, which is not in the overlay", where, so.Spec.ScaleTargetRef.Kind, so.Spec.ScaleTargetRef.Name)
			continue
		}
		// serve fires the cron schedules: at zero replicas nothing would.
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
			t.Errorf("%s: minReplicaCount must be at least 1: serve runs the schedules", where)
		}
		c := target.Spec.Template.Spec.Containers[0]
		lc := r.containerConfig(t, workload{"Deployment " + target.Name, nil, target.Spec.Template.Spec}, c, parseArgs(t, where, c.Args)["config"])
		if len(so.Spec.Triggers) == 0 {
			t.Errorf("%s: no trigger", where)
		}
		for _, tr := range so.Spec.Triggers {
			if tr.Type != "aws-sqs-queue" {
				t.Errorf("%s: trigger type %q, want aws-sqs-queue", where, tr.Type)
				continue
			}
			for k := range tr.Metadata {
				if !slices.Contains(sqsScalerKeys, k) {
					t.Errorf("%s: metadata %q is not a parameter of the aws-sqs-queue scaler (%v)", where, k, sqsScalerKeys)
				}
			}
			q := tr.Metadata["queueURL"]
			if !slices.ContainsFunc(lc.cfg.Schedules, func(s config.Schedule) bool { return s.QueueURL == q }) {
				t.Errorf("%s: scales on %q, which is no schedule's queue_url in the config", where, q)
			} else if got := queueRegion(t, q); tr.Metadata["awsRegion"] != got {
				t.Errorf("%s: awsRegion %q, but the queue is in %q", where, tr.Metadata["awsRegion"], got)
			}
			if n, err := strconv.Atoi(tr.Metadata["queueLength"]); tr.Metadata["queueLength"] != "" && (err != nil || n < 1) {
				t.Errorf("%s: queueLength %q is not a positive integer", where, tr.Metadata["queueLength"])
			}
			if tr.AuthenticationRef == nil {
				t.Errorf("%s: no authenticationRef", where)
				continue
			}
			ta, ok := r.triggerAuths[tr.AuthenticationRef.Name]
			if !ok {
				t.Errorf("%s: TriggerAuthentication %q is not in the overlay", where, tr.AuthenticationRef.Name)
				continue
			}
			if ta.Spec.PodIdentity == nil || ta.Spec.PodIdentity.Provider != "aws" {
				t.Errorf("%s: TriggerAuthentication %s: want podIdentity.provider aws", where, ta.Metadata.Name)
			}
		}
	}
}
