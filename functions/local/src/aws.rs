//! `--backend aws`: the tables and bucket of a deployed stack, for the operator's tools
//! (accounts, imports, erasures, ingest keys). Serving is the Lambda functions' job there.

use datarequest::ports::{Accounts, SubjectData};

/// A deployed stack's stores, named by the DATAREQUEST_* variables.
#[cfg(feature = "aws")]
pub struct Stack {
    resources: datarequest::adapters::aws::Resources,
    clients: datarequest::adapters::aws::Clients,
}

#[cfg(feature = "aws")]
impl Stack {
    /// The stack that the variables of `lookup` name.
    pub async fn open(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        use datarequest::adapters::aws::{Clients, Resources};

        let resources = Resources::from_lookup(lookup)?;
        let clients = Clients::from_env().await;
        Ok(Self { resources, clients })
    }

    /// Its accounts table.
    pub fn accounts(&self) -> Box<dyn Accounts> {
        let table = self.resources.accounts_table.clone();
        Box::new(datarequest::adapters::aws::DynamoDbAccounts::new(self.clients.dynamodb.clone(), table))
    }

    /// Its subjects table and exports bucket.
    pub fn subjects(&self) -> Box<dyn SubjectData> {
        let (dynamodb, s3) = (self.clients.dynamodb.clone(), self.clients.s3.clone());
        let (table, bucket) = (self.resources.subjects_table.clone(), self.resources.exports_bucket.clone());
        Box::new(datarequest::adapters::aws::DynamoDbSubjects::new(dynamodb, table, s3, bucket))
    }
}

/// This build has no AWS adapters: no stack can be opened.
#[cfg(not(feature = "aws"))]
pub enum Stack {}

#[cfg(not(feature = "aws"))]
impl Stack {
    /// Fails: this build has no AWS adapters.
    pub async fn open(_: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        anyhow::bail!("this build has no AWS support: build it with `--features aws`")
    }

    pub fn accounts(&self) -> Box<dyn Accounts> {
        match *self {}
    }

    pub fn subjects(&self) -> Box<dyn SubjectData> {
        match *self {}
    }
}
