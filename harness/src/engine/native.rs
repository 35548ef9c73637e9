//! The native engine: the runtime library linked into the harness.

use super::{Engine, EngineError, GenRequest, GenResult, ModelInfo};
use runtime::generate::session::PlanRequirement;
use runtime::generate::{Session, Step};
use runtime::model::Model;
use runtime::sha256::to_hex;

/// Runs generations with the runtime compiled for this machine.
#[derive(Default)]
pub struct NativeEngine {
    session: Option<Session>,
    /// KV cache positions (0 = the model's max context).
    pub context: u32,
}

impl NativeEngine {
    fn session(&mut self) -> Result<&mut Session, EngineError> {
        self.session.as_mut().ok_or(EngineError {
            code: runtime::ErrorCode::ModelNotLoaded as u32,
            message: "no model loaded".into(),
        })
    }
}

impl Engine for NativeEngine {
    fn apply_plan(&mut self, plan: &[u8], modules: &[&[u8]]) -> Result<Vec<u8>, EngineError> {
        Ok(self.session()?.apply_plan(plan, modules)?.to_bytes())
    }

    fn remove_adapters(&mut self) -> Result<(), EngineError> {
        Ok(self.session()?.remove_adapters()?)
    }

    fn require_plan(&mut self, req: Option<PlanRequirement>) -> Result<(), EngineError> {
        self.session()?.require_plan(req);
        Ok(())
    }

    fn name(&self) -> String {
        "native".into()
    }

    fn load(&mut self, bytes: &[u8]) -> Result<ModelInfo, EngineError> {
        self.session = None;
        let model = Model::load(bytes.to_vec())?;
        let session = Session::new(model, self.context)?;
        let info = ModelInfo {
            digest: to_hex(&session.model().digest),
            bytes: bytes.len() as u64,
        };
        self.session = Some(session);
        Ok(info)
    }

    fn generate(&mut self, req: &GenRequest) -> Result<GenResult, EngineError> {
        let s = self.session()?;
        s.start(&req.prompt, req.settings)?;
        let mut step_digests = Vec::new();
        let finish = loop {
            match s.step()? {
                Step::Token { .. } => step_digests.push(to_hex(&s.diagnostics().logits_digest)),
                Step::Finished(f) => {
                    // The last step sampled a stop token: its logits were digested too.
                    let d = s.diagnostics();
                    if d.logit_steps as usize > step_digests.len() {
                        step_digests.push(to_hex(&d.logits_digest));
                    }
                    break f;
                }
            }
        };
        let d = s.diagnostics();
        Ok(GenResult {
            prompt_tokens: s.prompt_tokens().to_vec(),
            tokens: s.generated_tokens().to_vec(),
            text: s.text().to_vec(),
            logits_digest: to_hex(&d.logits_digest),
            step_digests,
            finish: finish.name().into(),
        })
    }
}
