package fwtemplates_test

import (
	"fmt"
	"log"

	fwtemplates "zerotouch/firmware-templates"
)

// A station picks a built-in template, checks it before the first board,
// then renders each board's configuration.
func ExampleBuiltin() {
	tmpl, err := fwtemplates.Builtin("aziot-toml")
	if err != nil {
		log.Fatal(err)
	}
	if err := tmpl.Check(); err != nil {
		log.Fatal(err)
	}
	conf, err := tmpl.Render(fwtemplates.Data{
		IDScope:        "0ne0001A2B3",
		GlobalEndpoint: "global.azure-devices-provisioning.net",
		RegistrationID: "zt-sn-000123",
		Attestation:    "symmetricKey",
		DerivedKey:     "CgwkmWn768m9wGC8v5NUNvQcygAQ8ewnlyLI5fhDi9I=",
		Serial:         "SN-000123",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", conf)

	// A board whose data lacks what its attestation needs is refused.
	_, err = tmpl.Render(fwtemplates.Data{
		IDScope:        "0ne0001A2B3",
		GlobalEndpoint: "global.azure-devices-provisioning.net",
		RegistrationID: "zt-sn-000124",
		Attestation:    "x509",
	})
	fmt.Println(err)
	// Output:
	// # Azure IoT Identity Service provisioning (a section of /etc/aziot/config.toml),
	// # rendered by zerotouch from the "aziot-toml" template.
	// [provisioning]
	// source = "dps"
	// global_endpoint = "https://global.azure-devices-provisioning.net/"
	// id_scope = "0ne0001A2B3"
	//
	// [provisioning.attestation]
	// method = "symmetric_key"
	// registration_id = "zt-sn-000123"
	// symmetric_key = { value = "CgwkmWn768m9wGC8v5NUNvQcygAQ8ewnlyLI5fhDi9I=" }
	// cannot render firmware template "aziot-toml": field CertificateChain: is empty (x509 attestation needs it)
}
