/*
 * PSA internal trusted storage (PSA Storage API 1.0), implemented over
 * the file system by src/its_fs.c for builds without TF-M
 * (CONFIG_ZEROTOUCH_PROV_PSA_ITS_FS).
 */
#ifndef ZEROTOUCH_PSA_ITS_H_
#define ZEROTOUCH_PSA_ITS_H_

#include <stddef.h>
#include <stdint.h>
#include <psa/error.h>

typedef uint32_t psa_storage_create_flags_t;
typedef uint64_t psa_storage_uid_t;

#define PSA_STORAGE_FLAG_NONE 0
#define PSA_STORAGE_FLAG_WRITE_ONCE (1 << 0)

struct psa_storage_info_t {
	uint32_t size;
	psa_storage_create_flags_t flags;
};

psa_status_t psa_its_set(psa_storage_uid_t uid, uint32_t data_length, const void *p_data,
			 psa_storage_create_flags_t create_flags);
psa_status_t psa_its_get(psa_storage_uid_t uid, uint32_t data_offset, uint32_t data_length,
			 void *p_data, size_t *p_data_length);
psa_status_t psa_its_get_info(psa_storage_uid_t uid, struct psa_storage_info_t *p_info);
psa_status_t psa_its_remove(psa_storage_uid_t uid);

#endif
