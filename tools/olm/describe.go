package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// describe writes the generated end of spec.description: what the bundle installs and the
// permissions it grants, so that the prose cannot drift from the manifests.
func describe(r *rendered, md *Metadata, deps []v1alpha1.StrategyDeploymentSpec, ns, cluster *permissionSet, wide []widened, plugins []string) string {
	var b strings.Builder
	b.WriteString("### Contents\n\n")
	for _, d := range deps {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		sa := d.Spec.Template.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		fmt.Fprintf(&b, "- Deployment `%s`: %d replica(s), ServiceAccount `%s`\n", d.Name, replicas, sa)
	}
	var lines []string
	for _, u := range r.others {
		line := fmt.Sprintf("- %s `%s`", u.GetKind(), u.GetName())
		if u.GetKind() == "ConsolePlugin" {
			line += " (enable it on the install page, or in the console's Console plugins settings)"
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	b.WriteString(strings.Join(lines, "\n") + "\n")
	for _, c := range r.crds {
		fmt.Fprintf(&b, "- CustomResourceDefinition `%s`\n", c.Name)
	}
	b.WriteString("\nThe install namespace must be `" + r.namespace.GetName() + "`")
	if len(plugins) > 0 {
		b.WriteString(": the console plugin's backend Service is named there")
	}
	b.WriteString(".\n")
	if len(r.notShipped) > 0 {
		b.WriteString("\n### Not installed by OLM\n\nA registry+v1 bundle cannot carry these objects of Strata's manifests; apply them yourself (`oc apply -f -`):\n\n")
		reasons := map[string]string{}
		for _, n := range md.NotShipped {
			reasons[n.Kind+"/"+n.Name] = n.Reason
		}
		var docs []string
		for _, u := range r.notShipped {
			fmt.Fprintf(&b, "- %s `%s`: %s\n", u.GetKind(), u.GetName(), strings.TrimSpace(reasons[u.GetKind()+"/"+u.GetName()]))
			y, err := yaml.Marshal(u.Object)
			if err != nil {
				y = []byte(fmt.Sprintf("# %v\n", err))
			}
			docs = append(docs, string(y))
		}
		b.WriteString("\n```yaml\n" + strings.Join(docs, "---\n") + "```\n")
	}
	b.WriteString("\n### Permissions\n")
	wideRule := map[string]bool{}
	for _, w := range wide {
		for _, rule := range w.rules {
			wideRule[w.sa+"|"+ruleText(rule)] = true
		}
	}
	for _, p := range cluster.list() {
		fmt.Fprintf(&b, "\n`%s`, cluster-wide:\n\n", p.ServiceAccountName)
		for _, rule := range p.Rules {
			t := ruleText(rule)
			if wideRule[p.ServiceAccountName+"|"+t] {
				limit := "still limited to these names"
				if len(rule.ResourceNames) == 0 {
					limit = "read-only"
				}
				t += " (the manifests grant this in one other namespace; OLM grants namespaced permissions in the install namespace only, so it is cluster-wide here, " + limit + ")"
			}
			b.WriteString("- " + t + "\n")
		}
	}
	for _, p := range ns.list() {
		fmt.Fprintf(&b, "\n`%s`, in the install namespace:\n\n", p.ServiceAccountName)
		for _, rule := range p.Rules {
			b.WriteString("- " + ruleText(rule) + "\n")
		}
	}
	return b.String()
}

func ruleText(r rbacv1.PolicyRule) string {
	groups := make([]string, len(r.APIGroups))
	for i, g := range r.APIGroups {
		if g == "" {
			g = "core"
		}
		groups[i] = g
	}
	sort.Strings(groups)
	s := strings.Join(groups, ",") + " " + strings.Join(r.Resources, ",")
	if len(r.ResourceNames) > 0 {
		s += " named " + strings.Join(r.ResourceNames, ",")
	}
	if len(r.NonResourceURLs) > 0 {
		s += " " + strings.Join(r.NonResourceURLs, ",")
	}
	return s + ": " + strings.Join(r.Verbs, ", ")
}
