/* Shared between the provisioning group's source files. */
#ifndef ZEROTOUCH_PROV_INTERNAL_H_
#define ZEROTOUCH_PROV_INTERNAL_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zephyr/kernel.h>
#include <zephyr/mgmt/mcumgr/smp/smp.h>

/* Group result codes (board/doc.go; flasher.ProvRC*). */
enum zt_prov_rc {
	ZT_RC_OK = 0,
	ZT_RC_UNKNOWN = 1,
	ZT_RC_NO_CONFIG = 2,
	ZT_RC_CONFIG_MISMATCH = 3,
	ZT_RC_NO_TPM = 4,
	ZT_RC_TPM_FAILED = 5,
	ZT_RC_BAD_ALGORITHM = 6,
	ZT_RC_BAD_CN = 7,
};

#define ZT_NO_SLOT 0xff
#define ZT_CN_MAX 64

/* What is kept across resets, in CONFIG_ZEROTOUCH_PROV_STATE_PATH. */
struct zt_state {
	bool provisioned;
	uint8_t config_sha256[32];
	char config_path[CONFIG_ZEROTOUCH_PROV_PATH_MAX + 1];
	/* Key slots (0 or 1, ZT_NO_SLOT): the committed key, and the key
	 * keygen made since for pending_cn.
	 */
	uint8_t committed_key;
	uint8_t pending_key;
	char pending_cn[ZT_CN_MAX + 1];
};

/* The state, loaded on first use; callers hold zt_lock. */
extern struct k_mutex zt_lock;
struct zt_state *zt_state_get(void);
int zt_state_save(void);
/* Drops changes that zt_state_save failed to keep: the file is read again. */
void zt_state_forget(void);

/* Removes what a reset left of an unfinished write. */
void zt_remove_stale(const char *path);

/* sha256 of a file: 0, -ENOENT, or another negative errno. */
int zt_sha256_file(const char *path, uint8_t out[32]);

/* The keygen and commit halves that deal with keys (keygen.c). */
int zt_keygen_handler(struct smp_streamer *ctxt);
uint8_t zt_keys_commit(struct zt_state *st);
void zt_keys_drop(uint8_t slot);
void zt_keys_loaded(const struct zt_state *st);

/* Answers a group error in the response. */
int zt_group_err(struct smp_streamer *ctxt, enum zt_prov_rc rc);

#endif
