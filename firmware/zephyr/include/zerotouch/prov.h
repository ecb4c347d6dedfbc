/*
 * zerotouch's provisioning group (MCUmgr group 64): the board's side.
 *
 * The group registers itself with MCUmgr at boot (CONFIG_ZEROTOUCH_PROV);
 * an application calls these functions only to give it a TPM and to find
 * what provisioning left behind.
 */
#ifndef ZEROTOUCH_PROV_H_
#define ZEROTOUCH_PROV_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A TPM 2.0 the tpm command passes raw commands to: the board's SPI or I2C
 * TPM driver (TCG PC Client Platform TPM Profile, FIFO or CRB interface).
 */
struct zerotouch_tpm_transport {
	/**
	 * Sends one complete TPM 2.0 command (TPM 2.0 Part 3: header with
	 * tag, size and command code, then its parameters) and reads the
	 * complete response into rsp (at most rsp_size bytes), setting
	 * *rsp_len. Returns 0, or a negative errno when the TPM did not
	 * answer (the station sees group error 5, "the TPM failed"). A TPM
	 * error code is a successful transfer: it is in the response.
	 *
	 * Called from MCUmgr's thread, one command at a time; it may
	 * block (a TPM command takes up to seconds).
	 */
	int (*transceive)(const struct zerotouch_tpm_transport *tpm, const uint8_t *cmd,
			  size_t cmd_len, uint8_t *rsp, size_t rsp_size, size_t *rsp_len);
	/** The driver's own data. */
	void *user_data;
};

/**
 * Gives the group its TPM; NULL takes it away. Without one the board does
 * not list the "tpm" capability and the tpm command answers group error 4
 * (no TPM). Call it at boot, before the station connects.
 */
void zerotouch_prov_set_tpm(const struct zerotouch_tpm_transport *tpm);

/**
 * Reports whether the board is provisioned: a commit matched its
 * configuration, and nothing has rewritten that file through MCUmgr
 * since. Kept across resets. Copies the committed configuration's path
 * (NUL-terminated, at most path_size bytes) when path is not NULL.
 */
bool zerotouch_prov_is_provisioned(char *path, size_t path_size);

#if defined(CONFIG_ZEROTOUCH_PROV_KEYGEN)
#include <psa/crypto.h>

/**
 * Returns the PSA key ID of the key that keygen made and commit accepted:
 * the device's identity key, for its TLS client certificate. It signs
 * (PSA_ALG_ECDSA(PSA_ALG_SHA_256)) and cannot be exported. Returns
 * -ENOENT when no commit has accepted a key.
 */
int zerotouch_prov_key_id(psa_key_id_t *id);
#endif

#ifdef __cplusplus
}
#endif

#endif /* ZEROTOUCH_PROV_H_ */
