package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	k8svalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// A named validator, grouped as operator-sdk groups them.
type namedValidator struct {
	group, name string
	v           interfaces.Validator
}

// validators: what `operator-sdk bundle validate` runs by default (the CSV, CRD and bundle
// validators, after its registry format checks, which registryFormat below re-implements), the
// optional validators it labels suite=operatorframework, and the OpenShift checks (Red Hat's
// preflight runs operatorhubv2, standardcapabilities, standardcategories and
// alpha-deprecated-apis with the k8s version of com.redhat.openshift.versions; the community
// validator is operator-framework/api's for the OpenShift community catalog; `openshift` is ours,
// see openshift.go).
func validators(dir string, ann map[string]string) []namedValidator {
	return []namedValidator{
		{"default", "csv", validation.ClusterServiceVersionValidator},
		{"default", "crd", validation.CustomResourceDefinitionValidator},
		{"default", "bundle", validation.BundleValidator},
		{"operatorframework", "operatorhubv2", validation.OperatorHubV2Validator},
		{"operatorframework", "standardcapabilities", validation.StandardCapabilitiesValidator},
		{"operatorframework", "standardcategories", validation.StandardCategoriesValidator},
		{"operatorframework", "alpha-deprecated-apis", validation.AlphaDeprecatedAPIsValidator},
		{"operatorframework", "good-practices", validation.GoodPracticesValidator},
		{"operatorframework", "object", validation.ObjectValidator},
		{"openshift", "community", validation.CommunityOperatorValidator},
		{"openshift", "openshift", openShiftValidator(dir, ann)},
	}
}

type finding struct {
	level, group, name, text string
}

func runValidate(args []string, w io.Writer) (bool, error) {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	k8sVersion := fs.String("k8s-version", "", "Kubernetes version for the deprecated-API checks (default: from com.redhat.openshift.versions)")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if fs.NArg() != 1 {
		return false, errors.New("one bundle directory is required")
	}
	dir := fs.Arg(0)
	t0 := time.Now()
	var found []finding
	add := func(level, group, name, text string) { found = append(found, finding{level, group, name, text}) }

	ann, formatErrs := registryFormat(dir)
	for _, e := range formatErrs {
		add("ERROR", "default", "registry-format", e)
	}
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		add("ERROR", "default", "load", err.Error())
	}
	if bundle != nil && bundle.CSV != nil {
		bundle.Package = ann[annPackage]
		if *k8sVersion == "" {
			*k8sVersion = kubeForOpenShiftRange(ann[annOpenShiftVersions])
		}
		optional := map[string]string{}
		if *k8sVersion != "" {
			optional["k8s-version"] = *k8sVersion
		}
		if _, err := os.Stat(filepath.Join(dir, "bundle.Dockerfile")); err == nil {
			optional["index-path"] = filepath.Join(dir, "bundle.Dockerfile")
		}
		objs := append(bundle.ObjectsToValidate(), optional)
		for _, v := range validators(dir, ann) {
			for _, res := range v.v.Validate(objs...) {
				for _, e := range res.Errors {
					add("ERROR", v.group, v.name, describeErr(res.Name, e))
				}
				for _, e := range res.Warnings {
					add("WARN", v.group, v.name, describeErr(res.Name, e))
				}
			}
		}
	}
	errs, warns := 0, 0
	for _, f := range found {
		fmt.Fprintf(w, "%-5s [%s/%s] %s\n", f.level, f.group, f.name, f.text)
		if f.level == "ERROR" {
			errs++
		} else {
			warns++
		}
	}
	names := []string{"registry-format"}
	for _, v := range validators(dir, ann) {
		names = append(names, v.name)
	}
	fmt.Fprintf(w, "validate %s: %d error(s), %d warning(s); validators: %s; k8s-version %s (%s)\n",
		dir, errs, warns, strings.Join(names, ", "), orNone(*k8sVersion), time.Since(t0).Round(time.Millisecond))
	return errs == 0, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func describeErr(name string, e apierrors.Error) string {
	s := e.Error()
	if name != "" && !strings.Contains(s, name) {
		s = "(" + name + ") " + s
	}
	return s
}

const (
	annMediaType         = "operators.operatorframework.io.bundle.mediatype.v1"
	annManifests         = "operators.operatorframework.io.bundle.manifests.v1"
	annMetadata          = "operators.operatorframework.io.bundle.metadata.v1"
	annPackage           = "operators.operatorframework.io.bundle.package.v1"
	annChannels          = "operators.operatorframework.io.bundle.channels.v1"
	annDefaultChannel    = "operators.operatorframework.io.bundle.channel.default.v1"
	annOpenShiftVersions = "com.redhat.openshift.versions"
)

// registryFormat re-implements the format checks operator-sdk delegates to operator-registry
// (ValidateBundleFormat and the supported-kinds check of ValidateBundleContent): operator-registry
// is not on the module proxy here. It also rejects what the api loader would silently ignore:
// files with more than one YAML document (only the first is loaded), and checks that
// bundle.Dockerfile's labels equal metadata/annotations.yaml.
func registryFormat(dir string) (map[string]string, []string) {
	var errs []string
	ann := map[string]string{}
	if abs, err := filepath.Abs(dir); err == nil && strings.HasPrefix(filepath.Base(abs), ".") {
		errs = append(errs, dir+": operator-framework/api's bundle loader skips directories whose name starts with '.'; rename it")
	}
	data, err := os.ReadFile(filepath.Join(dir, "metadata", "annotations.yaml"))
	if err != nil {
		return ann, []string{"metadata/annotations.yaml: " + err.Error()}
	}
	var f struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil || f.Annotations == nil {
		return ann, []string{fmt.Sprintf("metadata/annotations.yaml: no annotations map (%v)", err)}
	}
	ann = f.Annotations
	want := map[string]string{annMediaType: "registry+v1", annManifests: "manifests/", annMetadata: "metadata/"}
	for k, v := range want {
		if ann[k] != v {
			errs = append(errs, fmt.Sprintf("metadata/annotations.yaml: %s is %q, want %q", k, ann[k], v))
		}
	}
	for _, k := range []string{annPackage, annChannels} {
		if ann[k] == "" {
			errs = append(errs, "metadata/annotations.yaml: "+k+" is missing")
		}
	}
	if d := ann[annDefaultChannel]; d != "" {
		ok := false
		for _, c := range strings.Split(ann[annChannels], ",") {
			ok = ok || strings.TrimSpace(c) == d
		}
		if !ok {
			errs = append(errs, fmt.Sprintf("metadata/annotations.yaml: default channel %q is not one of the channels %q", d, ann[annChannels]))
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "metadata"))
	if err == nil {
		for _, e := range entries {
			if e.IsDir() {
				errs = append(errs, "metadata/"+e.Name()+": directories are not allowed in metadata/")
			}
		}
	}

	mdir := filepath.Join(dir, strings.TrimSuffix(ann[annManifests], "/"))
	if ann[annManifests] == "" {
		mdir = filepath.Join(dir, "manifests")
	}
	entries, err = os.ReadDir(mdir)
	if err != nil {
		return ann, append(errs, err.Error())
	}
	if len(entries) == 0 {
		errs = append(errs, "manifests/ is empty")
	}
	csvs := 0
	for _, e := range entries {
		name := "manifests/" + e.Name()
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			errs = append(errs, name+": manifests/ holds only (non-hidden) files")
			continue
		}
		raw, err := os.ReadFile(filepath.Join(mdir, e.Name()))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		objs, err := decodeAll(raw)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if len(objs) != 1 {
			errs = append(errs, fmt.Sprintf("%s holds %d objects; OLM reads only the first object of a file", name, len(objs)))
			continue
		}
		if _, err := yaml.YAMLToJSONStrict(raw); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
		}
		u := objs[0]
		namespaced, ok := supportedKinds[u.GetKind()]
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: kind %s is not supported in a registry+v1 bundle", name, u.GetKind()))
			continue
		}
		if u.GetKind() == "ClusterServiceVersion" {
			csvs++
		}
		if !namespaced && u.GetNamespace() != "" {
			errs = append(errs, fmt.Sprintf("%s: cluster-scoped %s has a namespace", name, u.GetKind()))
		}
		nsOK := func(string, bool) []string { return nil }
		if fe := k8svalidation.ValidateObjectMetaAccessor(u, false, nsOK, field.NewPath("metadata")); len(fe) > 0 {
			errs = append(errs, fmt.Sprintf("%s: %v", name, fe.ToAggregate()))
		}
	}
	if csvs != 1 {
		errs = append(errs, fmt.Sprintf("manifests/ holds %d ClusterServiceVersions, want exactly 1", csvs))
	}

	if df, err := os.ReadFile(filepath.Join(dir, "bundle.Dockerfile")); err == nil {
		labels := map[string]string{}
		for _, line := range strings.Split(string(df), "\n") {
			if kv, ok := strings.CutPrefix(strings.TrimSpace(line), "LABEL "); ok {
				if k, v, ok := strings.Cut(kv, "="); ok {
					labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
		}
		keys := make([]string, 0, len(ann))
		for k := range ann {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if labels[k] != ann[k] {
				errs = append(errs, fmt.Sprintf("bundle.Dockerfile: LABEL %s=%q, metadata/annotations.yaml says %q", k, labels[k], ann[k]))
			}
		}
		for _, want := range []string{"COPY manifests /manifests/", "COPY metadata /metadata/"} {
			if !bytes.Contains(df, []byte(want)) {
				errs = append(errs, "bundle.Dockerfile: missing "+want)
			}
		}
	}
	return ann, errs
}
