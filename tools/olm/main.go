// Command strata-olm generates Strata's OLM bundle (registry+v1) from the kustomize manifests and
// validates a bundle directory with operator-framework/api's validators.
//
//	strata-olm generate --repo DIR --out DIR [--overlay PATH] [--kubectl PATH] [--rendered FILE]
//	strata-olm validate [--k8s-version X.Y] BUNDLE_DIR
//
// See README.md beside this file.
package main

import (
	"fmt"
	"os"
)

const usage = `usage:
  strata-olm generate --repo DIR --out DIR [--overlay PATH] [--kubectl PATH] [--rendered FILE] [--metadata FILE]
      Render the OpenShift overlay (kubectl kustomize) and write a registry+v1 bundle into DIR:
      manifests/ (CSV, CRDs, other supported objects), metadata/annotations.yaml, bundle.Dockerfile.
  strata-olm validate [--k8s-version X.Y] BUNDLE_DIR
      Run operator-framework/api's bundle validators (the default set, the operatorframework suite and
      OpenShift's checks) over BUNDLE_DIR. Prints every error and warning; exits 1 on any error.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "generate":
		err = runGenerate(os.Args[2:])
	case "validate":
		var ok bool
		ok, err = runValidate(os.Args[2:], os.Stdout)
		if err == nil && !ok {
			os.Exit(1)
		}
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "strata-olm: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata-olm %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
