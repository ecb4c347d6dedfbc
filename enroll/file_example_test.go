package enroll_test

import (
	"errors"
	"fmt"
	"strings"

	"zerotouch/enroll"
)

func ExampleReadFile() {
	const ek = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEA"
	file := "registrationId,attestation,endorsementKey,primaryKey,iotHubs\n" +
		"board-0001,tpm," + ek + ",,hub1.azure-devices.net;hub2.azure-devices.net\n" +
		"sensor-0002,symmetricKey,,,\n"
	es, err := enroll.ReadFile(strings.NewReader(file), "line-a.csv")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range es {
		fmt.Println(e.RegistrationID, e.Attestation.Type, e.IoTHubs)
	}

	bad := "registrationId,attestation,endorsementKey\n" +
		"board-0001,tpm,not base64!\n" +
		"BOARD-0001,tpm," + ek + "\n"
	_, err = enroll.ReadFile(strings.NewReader(bad), "line-b.csv")
	fmt.Println(errors.Is(err, enroll.ErrFile))
	fmt.Println(err)
	// Output:
	// board-0001 tpm [hub1.azure-devices.net hub2.azure-devices.net]
	// sensor-0002 symmetricKey []
	// true
	// line-b.csv:2: endorsementKey: not base64
	// line-b.csv:3: registrationId: registration ID "BOARD-0001" is also on line 2 (DPS ignores case)
}
