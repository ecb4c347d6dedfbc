/*
 * mbedTLS options the zerotouch provisioning group needs on top of
 * Zephyr's generic configuration (config-tls-generic.h includes this
 * file last, as CONFIG_MBEDTLS_USER_CONFIG_FILE). An application with a
 * user configuration of its own includes this file from it.
 */
#ifndef ZEROTOUCH_MBEDTLS_CONFIG_H_
#define ZEROTOUCH_MBEDTLS_CONFIG_H_

/* The CSR writer over an opaque (PSA) key. */
#define MBEDTLS_X509_CREATE_C
#define MBEDTLS_X509_CSR_WRITE_C
#define MBEDTLS_PK_C
#define MBEDTLS_PK_PARSE_C
#define MBEDTLS_PK_WRITE_C
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_OID_C
#define MBEDTLS_ASN1_PARSE_C
#define MBEDTLS_ASN1_WRITE_C

#if defined(CONFIG_ZEROTOUCH_PROV_PSA_ITS_FS)
/* Persistent keys, stored by the module's psa_its_* over the file system
 * rather than by mbedTLS's stdio-based one.
 */
#define MBEDTLS_PSA_CRYPTO_STORAGE_C
#undef MBEDTLS_PSA_ITS_FILE_C
#undef MBEDTLS_FS_IO
#endif

#endif /* ZEROTOUCH_MBEDTLS_CONFIG_H_ */
