-- hnpipe: one-time Snowflake account setup. Idempotent: run it again after editing, nothing breaks.
--
-- Run as a user with ACCOUNTADMIN (Snowsight worksheet, or `snow sql -f snowflake/setup.sql`).
-- Then set the credentials docs/environments.md lists for each environment and run
-- `hnpipe doctor --env <env> --smoke` once per environment before the first `hnpipe run`.
--
-- The ownership model (docs/snowflake.md, "Snowflake: who owns what"):
--   * Every environment's pipeline role creates, and so owns, the tables it publishes
--     (https://docs.snowflake.com/en/user-guide/security-access-control-overview: the creating
--     role owns an object). A publish swaps its staging table with the published one, which
--     needs OWNERSHIP of both tables (ALTER TABLE .. SWAP WITH), so no other role may own them.
--   * Schemas stay owned by the admin role that made them here; pipeline roles get USAGE,
--     CREATE TABLE and CREATE STAGE on their own schema only (write_pandas loads through a
--     temporary stage).
--   * The branch role builds each PRODUCTION_CLONE_<PR> itself (CREATE DATABASE, then one
--     zero-copy table clone per table), so it owns everything in its clones, and needs only
--     SELECT on production's tables. A database clone would keep production's owners and
--     grants on every schema and table (https://docs.snowflake.com/en/user-guide/object-clone).
--   * Readers get SELECT through future grants at schema level: a new table (every publish
--     creates one) gets them when it is created. Future grants at database level are ignored in
--     any schema that has its own (https://docs.snowflake.com/en/sql-reference/sql/grant-privilege),
--     so this script defines them at schema level only.
--
-- Names: roles HNPIPE_PROD, HNPIPE_STAGING, HNPIPE_BRANCH, HNPIPE_DEV, HNPIPE_READER; warehouse
-- HNPIPE_WH; service users HNPIPE_PROD_SVC, HNPIPE_STAGING_SVC, HNPIPE_BRANCH_SVC. Change them
-- here and in the SNOWFLAKE_*_ROLE / SNOWFLAKE_*_USER variables together.

USE ROLE ACCOUNTADMIN;

-- == Warehouse ==================================================================================
-- Every step's SQL runs on it; suspended when idle. STATEMENT_TIMEOUT_IN_SECONDS caps a runaway
-- statement on this warehouse (hnpipe also sets it per session,
-- https://docs.snowflake.com/en/sql-reference/parameters#statement-timeout-in-seconds).
CREATE WAREHOUSE IF NOT EXISTS HNPIPE_WH
  WAREHOUSE_SIZE = XSMALL AUTO_SUSPEND = 60 AUTO_RESUME = TRUE INITIALLY_SUSPENDED = TRUE
  STATEMENT_TIMEOUT_IN_SECONDS = 7200;

-- == Databases and schemas ======================================================================
-- Created here, owned by ACCOUNTADMIN: hnpipe never creates a database except branch clones.
CREATE DATABASE IF NOT EXISTS LOCAL;
CREATE DATABASE IF NOT EXISTS STAGING;
CREATE DATABASE IF NOT EXISTS PRODUCTION;
CREATE SCHEMA IF NOT EXISTS STAGING.HACKER_NEWS;
CREATE SCHEMA IF NOT EXISTS PRODUCTION.HACKER_NEWS;

-- == Roles ======================================================================================
CREATE ROLE IF NOT EXISTS HNPIPE_PROD;     -- the production pipeline (scheduled job)
CREATE ROLE IF NOT EXISTS HNPIPE_STAGING;  -- the staging pipeline
CREATE ROLE IF NOT EXISTS HNPIPE_BRANCH;   -- pull-request deployments; owns every PRODUCTION_CLONE_<PR>
CREATE ROLE IF NOT EXISTS HNPIPE_DEV;      -- developers' own runs in LOCAL.<developer>
CREATE ROLE IF NOT EXISTS HNPIPE_READER;   -- analysts and dashboards: read only

-- Admins keep control of what the roles own (role hierarchy: SYSADMIN inherits their privileges).
GRANT ROLE HNPIPE_PROD TO ROLE SYSADMIN;     -- admins: fix or drop production's tables by hand
GRANT ROLE HNPIPE_STAGING TO ROLE SYSADMIN;  -- admins: fix or drop staging's tables by hand
GRANT ROLE HNPIPE_BRANCH TO ROLE SYSADMIN;   -- admins: drop a clone by hand
GRANT ROLE HNPIPE_DEV TO ROLE SYSADMIN;      -- admins: clean up developers' schemas
GRANT ROLE HNPIPE_READER TO ROLE SYSADMIN;   -- admins: read what readers read

-- == Warehouse use ==============================================================================
GRANT USAGE ON WAREHOUSE HNPIPE_WH TO ROLE HNPIPE_PROD;     -- every production step's queries
GRANT USAGE ON WAREHOUSE HNPIPE_WH TO ROLE HNPIPE_STAGING;  -- every staging step's queries
GRANT USAGE ON WAREHOUSE HNPIPE_WH TO ROLE HNPIPE_BRANCH;   -- admin clone/drop/prune, branch runs, hnpipe diff
GRANT USAGE ON WAREHOUSE HNPIPE_WH TO ROLE HNPIPE_DEV;      -- local runs with HNPIPE_WAREHOUSE=snowflake
GRANT USAGE ON WAREHOUSE HNPIPE_WH TO ROLE HNPIPE_READER;   -- readers' queries

-- == Production: HNPIPE_PROD =====================================================================
GRANT USAGE ON DATABASE PRODUCTION TO ROLE HNPIPE_PROD;                 -- pipeline.start: USE SCHEMA PRODUCTION.HACKER_NEWS
GRANT USAGE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_PROD;       -- pipeline.start: USE SCHEMA; every read
GRANT CREATE TABLE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_PROD; -- publish: CREATE TABLE <T>__STAGING_<run>, CTAS; history: PIPELINE_RUNS
GRANT CREATE STAGE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_PROD; -- publish: write_pandas' temporary stage; HNPIPE_STAGE (owned, so read and written, by the role)

-- == Staging: HNPIPE_STAGING (nothing on PRODUCTION) ============================================
GRANT USAGE ON DATABASE STAGING TO ROLE HNPIPE_STAGING;                  -- pipeline.start: USE SCHEMA STAGING.HACKER_NEWS
GRANT USAGE ON SCHEMA STAGING.HACKER_NEWS TO ROLE HNPIPE_STAGING;        -- pipeline.start: USE SCHEMA; every read
GRANT CREATE TABLE ON SCHEMA STAGING.HACKER_NEWS TO ROLE HNPIPE_STAGING; -- publish: staging tables, CTAS; history: PIPELINE_RUNS
GRANT CREATE STAGE ON SCHEMA STAGING.HACKER_NEWS TO ROLE HNPIPE_STAGING; -- publish: write_pandas' temporary stage; HNPIPE_STAGE (owned, so read and written, by the role)

-- == Branch: HNPIPE_BRANCH (reads PRODUCTION, writes only databases it creates) ==================
GRANT CREATE DATABASE ON ACCOUNT TO ROLE HNPIPE_BRANCH;                  -- admin clone: CREATE OR REPLACE DATABASE PRODUCTION_CLONE_<PR> (owned by this role)
GRANT USAGE ON DATABASE PRODUCTION TO ROLE HNPIPE_BRANCH;                -- admin clone: SHOW DATABASES sees PRODUCTION; hnpipe diff
GRANT USAGE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_BRANCH;      -- admin clone: list production's tables
GRANT SELECT ON ALL TABLES IN SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_BRANCH;    -- admin clone: CREATE TABLE .. CLONE PRODUCTION.HACKER_NEWS.<T>; hnpipe diff
GRANT SELECT ON FUTURE TABLES IN SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_BRANCH; -- the same for tables each production publish creates

-- == Local: HNPIPE_DEV (each developer's own schema in LOCAL) ====================================
GRANT USAGE ON DATABASE LOCAL TO ROLE HNPIPE_DEV;          -- pipeline.start: USE SCHEMA LOCAL.<developer>
GRANT CREATE SCHEMA ON DATABASE LOCAL TO ROLE HNPIPE_DEV;  -- first local run: CREATE SCHEMA LOCAL.<developer> (then owned by HNPIPE_DEV)

-- == Readers: HNPIPE_READER ======================================================================
GRANT USAGE ON DATABASE PRODUCTION TO ROLE HNPIPE_READER;                            -- reading PRODUCTION.HACKER_NEWS
GRANT USAGE ON SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_READER;                  -- reading PRODUCTION.HACKER_NEWS
GRANT SELECT ON ALL TABLES IN SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_READER;    -- tables published before this script ran
GRANT SELECT ON FUTURE TABLES IN SCHEMA PRODUCTION.HACKER_NEWS TO ROLE HNPIPE_READER; -- every publish's new table, kept across SWAP
GRANT USAGE ON DATABASE STAGING TO ROLE HNPIPE_READER;                               -- reading STAGING.HACKER_NEWS
GRANT USAGE ON SCHEMA STAGING.HACKER_NEWS TO ROLE HNPIPE_READER;                     -- reading STAGING.HACKER_NEWS
GRANT SELECT ON ALL TABLES IN SCHEMA STAGING.HACKER_NEWS TO ROLE HNPIPE_READER;       -- tables published before this script ran
GRANT SELECT ON FUTURE TABLES IN SCHEMA STAGING.HACKER_NEWS TO ROLE HNPIPE_READER;    -- every publish's new table, kept across SWAP

-- == Service users (no passwords) ================================================================
-- TYPE = SERVICE users cannot log in with a password
-- (https://docs.snowflake.com/en/user-guide/admin-user-management#types-of-users).
CREATE USER IF NOT EXISTS HNPIPE_PROD_SVC TYPE = SERVICE DEFAULT_ROLE = HNPIPE_PROD DEFAULT_WAREHOUSE = HNPIPE_WH;
CREATE USER IF NOT EXISTS HNPIPE_STAGING_SVC TYPE = SERVICE DEFAULT_ROLE = HNPIPE_STAGING DEFAULT_WAREHOUSE = HNPIPE_WH;
CREATE USER IF NOT EXISTS HNPIPE_BRANCH_SVC TYPE = SERVICE DEFAULT_ROLE = HNPIPE_BRANCH DEFAULT_WAREHOUSE = HNPIPE_WH;
GRANT ROLE HNPIPE_PROD TO USER HNPIPE_PROD_SVC;        -- the production job logs in with this role
GRANT ROLE HNPIPE_BRANCH TO USER HNPIPE_PROD_SVC;      -- the nightly prune: production's login, the branch role (owner of the clones)
GRANT ROLE HNPIPE_STAGING TO USER HNPIPE_STAGING_SVC;  -- the staging job logs in with this role
GRANT ROLE HNPIPE_BRANCH TO USER HNPIPE_BRANCH_SVC;    -- pull/merge request jobs log in with this role
-- A session holds only the role it names: the default secondary roles are ALL
-- (https://docs.snowflake.com/en/release-notes/bcr-bundles/2024_08/bcr-1692; "()" means none), which
-- would let the prune's branch-role session write PRODUCTION through HNPIPE_PROD.
ALTER USER HNPIPE_PROD_SVC SET DEFAULT_SECONDARY_ROLES = ();
ALTER USER HNPIPE_STAGING_SVC SET DEFAULT_SECONDARY_ROLES = ();
ALTER USER HNPIPE_BRANCH_SVC SET DEFAULT_SECONDARY_ROLES = ();

-- How each service user proves who it is. One identity per OIDC subject, one subject per user:
-- a user's WORKLOAD_IDENTITY takes one literal ISSUER and SUBJECT, with no pattern
-- (https://docs.snowflake.com/en/sql-reference/sql/alter-user), and nothing in Snowflake's docs
-- lets two users share a subject, so no ADD WORKLOAD IDENTITY is used (it could not run twice either).
--
-- Who logs in how (hnpipe doctor names the method; docs/snowflake.md has the same table, and
-- tests/test_logins.py checks both against this file, the CI files and the params files):
--
-- | environment | who | where | user | role | login |
-- |---|---|---|---|---|---|
-- | production | scheduled run | GitHub `production.yml` run | HNPIPE_PROD_SVC | HNPIPE_PROD | workload identity, subject `repo:OWNER/REPO:environment:production` |
-- | production | nightly prune | GitHub `production.yml` prune-clones | HNPIPE_PROD_SVC | HNPIPE_BRANCH | workload identity, subject `repo:OWNER/REPO:environment:production` |
-- | production | freshness check | GitHub `production.yml` freshness | HNPIPE_PROD_SVC | HNPIPE_PROD | workload identity, subject `repo:OWNER/REPO:environment:production` |
-- | branch | pull request jobs | GitHub `branch-deployment.yml` clone, deploy, teardown | HNPIPE_BRANCH_SVC | HNPIPE_BRANCH | workload identity, subject `repo:OWNER/REPO:pull_request` |
-- | production | scheduled run | GitLab `.gitlab-ci.yml` production-run | HNPIPE_PROD_SVC | HNPIPE_PROD | workload identity, subject `project_path:GROUP/PROJECT:ref_type:branch:ref:main` |
-- | production | scheduled prune | GitLab `.gitlab-ci.yml` prune-clones | HNPIPE_PROD_SVC | HNPIPE_BRANCH | workload identity, subject `project_path:GROUP/PROJECT:ref_type:branch:ref:main` |
-- | production | freshness check | GitLab `.gitlab-ci.yml` freshness | HNPIPE_PROD_SVC | HNPIPE_PROD | workload identity, subject `project_path:GROUP/PROJECT:ref_type:branch:ref:main` |
-- | production | backfill | GitHub `backfill.yml` plan, shard, merge | HNPIPE_PROD_SVC | HNPIPE_PROD | workload identity, subject `repo:OWNER/REPO:environment:production` |
-- | production | backfill | GitLab `.gitlab-ci.yml` backfill-plan, backfill-merge | HNPIPE_PROD_SVC | HNPIPE_PROD | workload identity, subject `project_path:GROUP/PROJECT:ref_type:branch:ref:main` |
-- | branch | merge request jobs | GitLab `.gitlab/branch-deployment.yml` branch-clone, branch-deploy, branch-stop | HNPIPE_BRANCH_SVC | HNPIPE_BRANCH | key pair |
-- | staging | staging runs | a staging runner | HNPIPE_STAGING_SVC | HNPIPE_STAGING | key pair |
-- | local | a developer's own runs | a laptop | the person | HNPIPE_DEV | browser SSO, password + passcode, key pair or password |
-- | production | `hnpipe admin handover --apply` | a laptop | the person (IT) | SECURITYADMIN | browser SSO, password + passcode or key pair |
--
-- Pick the lines for your CI and remove the leading '-- '; replace OWNER/REPO or GROUP/PROJECT.
-- (a) Workload identity federation, no stored secret
--     (https://docs.snowflake.com/en/user-guide/workload-identity-federation).
--     GitHub Actions (issuer https://token.actions.githubusercontent.com). The production jobs
--     (run and prune) name the deployment environment `production`; pull request jobs name none:
-- ALTER USER HNPIPE_PROD_SVC SET WORKLOAD_IDENTITY = (TYPE = OIDC ISSUER = 'https://token.actions.githubusercontent.com' SUBJECT = 'repo:OWNER/REPO:environment:production');
-- ALTER USER HNPIPE_BRANCH_SVC SET WORKLOAD_IDENTITY = (TYPE = OIDC ISSUER = 'https://token.actions.githubusercontent.com' SUBJECT = 'repo:OWNER/REPO:pull_request');
--     GitLab (issuer https://gitlab.com; the scheduled production run and prune run on main):
-- ALTER USER HNPIPE_PROD_SVC SET WORKLOAD_IDENTITY = (TYPE = OIDC ISSUER = 'https://gitlab.com' SUBJECT = 'project_path:GROUP/PROJECT:ref_type:branch:ref:main');
-- (b) Key pair (https://docs.snowflake.com/en/user-guide/key-pair-auth); paste the public key
--     without its BEGIN/END lines; keep the private key file mode 600.
--     GitLab merge request jobs: their OIDC subject names the merge request's source branch
--     (project_path:GROUP/PROJECT:ref_type:branch:ref:<branch>), which no single SUBJECT matches,
--     so they use the branch user's key pair (a File-type CI/CD variable, .gitlab-ci.yml):
-- ALTER USER HNPIPE_BRANCH_SVC SET RSA_PUBLIC_KEY = 'MIIBIjANBgkqh...';
--     Staging:
-- ALTER USER HNPIPE_STAGING_SVC SET RSA_PUBLIC_KEY = 'MIIBIjANBgkqh...';

-- == People ======================================================================================
-- A person logs in as themself: browser SSO (SNOWFLAKE_AUTHENTICATOR=EXTERNALBROWSER), or a
-- password with their authenticator app's passcode (SNOWFLAKE_PASSCODE), or a key pair; never in
-- CI (hnpipe refuses these when CI is set). A developer's own runs use HNPIPE_DEV:
-- GRANT ROLE HNPIPE_DEV TO USER JANE;
-- GRANT ROLE HNPIPE_READER TO USER ANALYST_JOE;
