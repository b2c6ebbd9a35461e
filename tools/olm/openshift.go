package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	"github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// openShiftFeatureKeys are the features.operators.openshift.io annotations Red Hat's catalogs
// expect on every CSV (each "true" or "false").
var openShiftFeatureKeys = []string{"disconnected", "fips-compliant", "proxy-aware", "tls-profiles",
	"token-auth-aws", "token-auth-azure", "token-auth-gcp", "cnf", "cni", "csi"}

// ocpRange parses com.redhat.openshift.versions: "v4.20" (4.20 and later), "=v4.20" (only 4.20),
// "v4.20-v4.22" (a range). max is "" when open-ended.
func ocpRange(s string) (min, max string, err error) {
	s = strings.Trim(strings.TrimSpace(s), `"'`)
	parse := func(v string) (string, error) {
		v = strings.TrimPrefix(strings.TrimSpace(v), "v")
		parts := strings.Split(v, ".")
		if len(parts) != 2 {
			return "", fmt.Errorf("%q is not vMAJOR.MINOR", v)
		}
		for _, p := range parts {
			if _, err := strconv.Atoi(p); err != nil {
				return "", fmt.Errorf("%q is not vMAJOR.MINOR", v)
			}
		}
		return v, nil
	}
	switch {
	case s == "":
		return "", "", fmt.Errorf("empty")
	case strings.HasPrefix(s, "="):
		v, err := parse(strings.TrimPrefix(s, "="))
		return v, v, err
	case strings.Contains(s, "-"):
		lo, hi, _ := strings.Cut(s, "-")
		if min, err = parse(lo); err != nil {
			return "", "", err
		}
		if max, err = parse(hi); err != nil {
			return "", "", err
		}
		if semver.MustParse(min + ".0").GT(semver.MustParse(max + ".0")) {
			return "", "", fmt.Errorf("range %s is empty", s)
		}
		return min, max, nil
	default:
		min, err = parse(s)
		return min, "", err
	}
}

func kubeOf(ocp string) string {
	for _, e := range ocpKube {
		if e.ocp == ocp {
			return e.kube
		}
	}
	return ""
}

// kubeForOpenShiftRange gives the Kubernetes version to check removed APIs against: that of the
// newest OpenShift the label allows (the newest in the table when open-ended), as Red Hat's
// preflight does.
func kubeForOpenShiftRange(label string) string {
	min, max, err := ocpRange(label)
	if err != nil || min == "" {
		return ""
	}
	if max == "" {
		max = ocpKube[len(ocpKube)-1].ocp
	}
	return kubeOf(max)
}

// openShiftValidator checks what installing through OpenShift's OperatorHub relies on. It follows
// the rules of Red Hat's ocp-olm-catalog-validator (the OpenShift versions label, the
// olm.maxOpenShiftVersion property, removed APIs) — that module is not on the module proxy, so the
// rules are re-implemented here — and adds Strata's own console-plugin and install checks.
func openShiftValidator(dir string, ann map[string]string) interfaces.Validator {
	return interfaces.ValidatorFunc(func(objs ...interface{}) []apierrors.ManifestResult {
		var results []apierrors.ManifestResult
		for _, o := range objs {
			if b, ok := o.(*manifests.Bundle); ok && b.CSV != nil {
				results = append(results, checkOpenShift(dir, ann, b))
			}
		}
		return results
	})
}

func checkOpenShift(dir string, ann map[string]string, b *manifests.Bundle) apierrors.ManifestResult {
	csv := b.CSV
	res := apierrors.ManifestResult{Name: csv.Name}
	errf := func(f string, a ...any) { res.Add(apierrors.ErrInvalidCSV(fmt.Sprintf(f, a...), csv.Name)) }
	warnf := func(f string, a ...any) { res.Add(apierrors.WarnInvalidCSV(fmt.Sprintf(f, a...), csv.Name)) }

	// 1. The OpenShift versions label, against minKubeVersion and olm.maxOpenShiftVersion.
	label, hasLabel := ann[annOpenShiftVersions]
	min, max := "", ""
	if !hasLabel {
		warnf("metadata/annotations.yaml has no %s: Red Hat's catalogs cannot tell which OpenShift releases the bundle is for", annOpenShiftVersions)
	} else if lo, hi, err := ocpRange(label); err != nil {
		errf("%s %q: %v", annOpenShiftVersions, label, err)
	} else {
		min, max = lo, hi
		if k := kubeOf(min); k == "" {
			warnf("%s: OpenShift %s is not in the release table (tools/olm/generate.go)", annOpenShiftVersions, min)
		} else if mk, err := semver.ParseTolerant(csv.Spec.MinKubeVersion); err == nil {
			if semver.MustParse(k + ".0").LT(mk) {
				errf("%s starts at OpenShift %s (Kubernetes %s) but minKubeVersion is %s: OLM would refuse the install there", annOpenShiftVersions, min, k, csv.Spec.MinKubeVersion)
			}
		}
	}
	maxOCP := ""
	if props := csv.Annotations["olm.properties"]; props != "" {
		var list []struct{ Type, Value string }
		if err := json.Unmarshal([]byte(props), &list); err != nil {
			errf("olm.properties is not a JSON list of {type, value}: %v", err)
		}
		for _, p := range list {
			if p.Type == "olm.maxOpenShiftVersion" {
				maxOCP = p.Value
			}
		}
	}
	if maxOCP != "" {
		v, err := semver.ParseTolerant(maxOCP)
		switch {
		case err != nil:
			errf("olm.maxOpenShiftVersion %q is not a version: %v", maxOCP, err)
		case v.Patch != 0 || strings.Count(maxOCP, ".") > 1:
			warnf("olm.maxOpenShiftVersion %q must be MAJOR.MINOR", maxOCP)
		case min != "" && v.LT(semver.MustParse(min+".0")):
			errf("olm.maxOpenShiftVersion %s is below the first release of %s (%s)", maxOCP, annOpenShiftVersions, label)
		case max != "" && v.GT(semver.MustParse(max+".0")):
			errf("olm.maxOpenShiftVersion %s is above the last release of %s (%s)", maxOCP, annOpenShiftVersions, label)
		}
	}
	if k := kubeForOpenShiftRange(label); k != "" {
		objs := append(b.ObjectsToValidate(), map[string]string{"k8s-version": k})
		// Its errors are objects of removed API versions; its warnings are guesses from RBAC rules
		// (which carry no version), already printed by the validator itself.
		for _, r := range validation.AlphaDeprecatedAPIsValidator.Validate(objs...) {
			for _, e := range r.Errors {
				if maxOCP == "" {
					errf("the bundle uses APIs removed by Kubernetes %s (OpenShift %s) and sets no olm.maxOpenShiftVersion: %s", k, orNewest(max), e.Detail)
				}
			}
		}
	}

	// 2. The console plugin: named in console.openshift.io/plugins, shipped, and served by a
	// Service of the bundle in the namespace the bundle will be installed into.
	objects := map[string]*unstructured.Unstructured{}
	var plugins []*unstructured.Unstructured
	for _, o := range b.Objects {
		objects[o.GetKind()+"/"+o.GetName()] = o
		if o.GetKind() == "ConsolePlugin" {
			plugins = append(plugins, o)
		}
	}
	listed := map[string]bool{}
	if v, ok := csv.Annotations["console.openshift.io/plugins"]; ok {
		var names []string
		if err := json.Unmarshal([]byte(v), &names); err != nil {
			errf("console.openshift.io/plugins %q is not a JSON list of names: %v", v, err)
		}
		for _, n := range names {
			listed[n] = true
			if objects["ConsolePlugin/"+n] == nil {
				errf("console.openshift.io/plugins names %s, but the bundle has no ConsolePlugin %s", n, n)
			}
		}
	}
	suggested := csv.Annotations["operatorframework.io/suggested-namespace"]
	if t, ok := csv.Annotations["operatorframework.io/suggested-namespace-template"]; ok {
		var ns struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(t), &ns); err != nil || ns.Kind != "Namespace" || ns.APIVersion != "v1" || ns.Metadata.Name == "" {
			errf("operatorframework.io/suggested-namespace-template is not a JSON v1 Namespace with a name (%v)", err)
		} else if suggested != "" && ns.Metadata.Name != suggested {
			errf("operatorframework.io/suggested-namespace-template names %s, suggested-namespace %s: the console uses the template", ns.Metadata.Name, suggested)
		} else {
			suggested = ns.Metadata.Name
		}
	}
	allNS := false
	for _, m := range csv.Spec.InstallModes {
		allNS = allNS || (m.Type == v1alpha1.InstallModeTypeAllNamespaces && m.Supported)
	}
	for _, p := range plugins {
		if !listed[p.GetName()] {
			warnf("ConsolePlugin %s is not in console.openshift.io/plugins: the install page will not offer to enable it", p.GetName())
		}
		svc, _, _ := unstructured.NestedString(p.Object, "spec", "backend", "service", "name")
		ns, _, _ := unstructured.NestedString(p.Object, "spec", "backend", "service", "namespace")
		port, _, _ := unstructured.NestedFieldNoCopy(p.Object, "spec", "backend", "service", "port")
		s := objects["Service/"+svc]
		if s == nil {
			errf("ConsolePlugin %s is served by Service %s, which the bundle does not ship", p.GetName(), svc)
		} else {
			ports, _, _ := unstructured.NestedSlice(s.Object, "spec", "ports")
			found := false
			for _, x := range ports {
				if m, ok := x.(map[string]any); ok && fmt.Sprint(m["port"]) == fmt.Sprint(port) {
					found = true
				}
			}
			if !found {
				errf("ConsolePlugin %s uses port %v of Service %s, which has no such port", p.GetName(), port, svc)
			}
		}
		switch {
		case suggested == "":
			errf("ConsolePlugin %s names namespace %s for its Service, but the CSV suggests no install namespace (operatorframework.io/suggested-namespace)", p.GetName(), ns)
		case ns != suggested:
			errf("ConsolePlugin %s names namespace %s for its Service, but the suggested install namespace is %s", p.GetName(), ns, suggested)
		case allNS && ns != "openshift-operators":
			errf("ConsolePlugin %s needs its Service in %s, but AllNamespaces installs go to openshift-operators", p.GetName(), ns)
		}
	}

	// 3. The OpenShift feature annotations.
	for _, k := range openShiftFeatureKeys {
		v, ok := csv.Annotations["features.operators.openshift.io/"+k]
		if !ok {
			warnf("annotation features.operators.openshift.io/%s is missing", k)
		} else if v != "true" && v != "false" {
			errf("annotation features.operators.openshift.io/%s is %q, want \"true\" or \"false\"", k, v)
		}
	}

	// 4. SCCs are granted by name, and every image the install runs is a relatedImage (mirroring
	// for disconnected clusters copies relatedImages).
	strategy := csv.Spec.InstallStrategy.StrategySpec
	for _, p := range append(append([]v1alpha1.StrategyDeploymentPermissions(nil), strategy.Permissions...), strategy.ClusterPermissions...) {
		for _, r := range p.Rules {
			for _, res := range r.Resources {
				if (res == "securitycontextconstraints" || res == "*") && len(r.ResourceNames) == 0 && contains(r.Verbs, "use") {
					errf("%s may use every SecurityContextConstraints: name the SCC in resourceNames", p.ServiceAccountName)
				}
			}
		}
	}
	related := map[string]bool{}
	for _, r := range csv.Spec.RelatedImages {
		related[r.Image] = true
		// Mirroring for a disconnected cluster works by digest only (ImageDigestMirrorSets).
		if csv.Annotations["features.operators.openshift.io/disconnected"] == "true" && !strings.Contains(r.Image, "@sha256:") {
			errf("features.operators.openshift.io/disconnected is \"true\" but relatedImage %s (%s) is not pinned by digest", r.Name, r.Image)
		}
	}
	for _, d := range strategy.DeploymentSpecs {
		for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
			if !related[c.Image] {
				warnf("image %s of Deployment %s is not in spec.relatedImages", c.Image, d.Name)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bundle.Dockerfile")); err != nil {
		warnf("no bundle.Dockerfile beside manifests/ and metadata/")
	}
	return res
}

func orNewest(max string) string {
	if max == "" {
		return ocpKube[len(ocpKube)-1].ocp
	}
	return max
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s || x == "*" {
			return true
		}
	}
	return false
}
