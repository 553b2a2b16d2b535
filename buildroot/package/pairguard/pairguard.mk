################################################################################
#
# pairguard
#
################################################################################

# Built from this repository (the parent of the BR2_EXTERNAL tree), not from a
# release tarball. To build from another checkout, set in local.mk:
#   PAIRGUARD_OVERRIDE_SRCDIR = /path/to/pairguard
PAIRGUARD_VERSION = local
PAIRGUARD_SITE = $(BR2_EXTERNAL_PAIRGUARD_PATH)/..
PAIRGUARD_SITE_METHOD = local
PAIRGUARD_LICENSE = Proprietary
PAIRGUARD_GOMOD = github.com/pairguard/pairguard
PAIRGUARD_BUILD_TARGETS = firmware/cmd/pairguard
PAIRGUARD_LDFLAGS = -s -w
# Keep downloads of the QEMU test pair and in-tree Buildroot outputs out of the
# rsynced source.
PAIRGUARD_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude test/hil/.cache --exclude /output --exclude /buildroot/output

# A local (or overridden) source is rsynced, not downloaded, so Buildroot's
# download-time vendoring does not run: vendor the modules after the rsync
# instead. This step needs a Go module proxy: PAIRGUARD_GOPROXY (default: the
# GOPROXY of the environment; empty means Go's default). The build itself then
# runs offline with -mod=vendor like every other golang-package.
PAIRGUARD_GOPROXY ?= $(GOPROXY)
define PAIRGUARD_VENDOR_MODULES
	cd $(@D) && $(HOST_GO_COMMON_ENV) GOFLAGS=-mod=mod \
		GOPROXY=$(PAIRGUARD_GOPROXY) $(GO_BIN) mod vendor
endef
PAIRGUARD_POST_RSYNC_HOOKS += PAIRGUARD_VENDOR_MODULES

define PAIRGUARD_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(PAIRGUARD_PKGDIR)/S60pairguard \
		$(TARGET_DIR)/etc/init.d/S60pairguard
endef

$(eval $(golang-package))
