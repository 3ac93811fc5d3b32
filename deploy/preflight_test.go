package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPreflightPod checks the pod deploy/README.md runs `check -aws` in
// before the first apply: it must take the worker's identity, region,
// image and keys as serve's pods do, pass the restricted Pod Security
// Standard's checks, and come before the overlay is applied.
func TestPreflightPod(t *testing.T) {
	b, err := os.ReadFile("kubernetes/preflight-pod.json")
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pod); err != nil {
		t.Fatalf("kubernetes/preflight-pod.json: %v", err)
	}
	r := render(t, "serve", false)
	if len(r.deployments) != 1 {
		t.Fatalf("serve: %d Deployments, want 1", len(r.deployments))
	}
	serve := r.deployments[0].Spec.Template.Spec
	if pod.Spec.ServiceAccountName != serve.ServiceAccountName {
		t.Errorf("preflight pod: ServiceAccount %q, serve's is %q: the check must run under the worker's role", pod.Spec.ServiceAccountName, serve.ServiceAccountName)
	}
	if sc := pod.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("preflight pod: must set runAsNonRoot and the RuntimeDefault seccomp profile (the namespace enforces restricted)")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("preflight pod: %d containers, want 1", len(pod.Spec.Containers))
	}
	c, sc := pod.Spec.Containers[0], serve.Containers[0]
	if s := c.SecurityContext; s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation ||
		s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Error("preflight pod: the container must set allowPrivilegeEscalation false and drop ALL capabilities")
	}
	if c.Image != sc.Image {
		t.Errorf("preflight pod: image %q, serve's is %q", c.Image, sc.Image)
	}
	env := func(c corev1.Container, name string) string {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
		return ""
	}
	if got, want := env(c, "AWS_REGION"), env(sc, "AWS_REGION"); got != want {
		t.Errorf("preflight pod: AWS_REGION %q, serve's is %q", got, want)
	}
	flags := parseArgs(t, "preflight pod", c.Args)
	if c.Args[0] != "check" || flags["config"] != "/dev/stdin" || !c.Stdin {
		t.Errorf("preflight pod: args %q: want check -config /dev/stdin -aws, the config on stdin", c.Args)
	}
	if _, ok := flags["aws"]; !ok {
		t.Errorf("preflight pod: args %q: no -aws", c.Args)
	}
	// The keys where serve's config looks for them, from the same Secret.
	for _, m := range sc.VolumeMounts {
		v := findVolume(serve, m.Name)
		if v == nil || v.Secret == nil {
			continue
		}
		pm := findMount(c, m.MountPath)
		if pm == nil {
			t.Errorf("preflight pod: nothing mounted at %s, where serve has Secret %s", m.MountPath, v.Secret.SecretName)
			continue
		}
		if pv := findVolume(pod.Spec, pm.Name); pv == nil || pv.Secret == nil || pv.Secret.SecretName != v.Secret.SecretName {
			t.Errorf("preflight pod: %s is not Secret %s", m.MountPath, v.Secret.SecretName)
		}
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	run := strings.Index(string(readme), `--overrides="$(cat deploy/kubernetes/preflight-pod.json)"`)
	apply := strings.Index(string(readme), "kubectl apply -k deploy/kubernetes/overlays/")
	switch {
	case run < 0:
		t.Error("deploy/README.md does not run the preflight pod (kubectl run ... --overrides=\"$(cat deploy/kubernetes/preflight-pod.json)\")")
	case apply < 0:
		t.Error("deploy/README.md does not apply an overlay")
	case run > apply:
		t.Error("deploy/README.md applies the overlay before the preflight: check -aws must come first")
	}
}
