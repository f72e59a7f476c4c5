//! On the CPU backends the core kernel reads the logits in the backend's own storage, and the
//! gradient it writes is the buffer burn's backward returns: pointer checks against the backend
//! primitives themselves.

use std::sync::Mutex;

use burn::backend::autodiff::Autodiff;
use burn::backend::flex::Flex;
use burn::tensor::{Device, Int, Tensor, TensorData};
use longtail::ndarray::{ArrayRef1, ArrayRef2};
use longtail::{Reduction, SoftmaxLoss, Targets as CoreTargets};
use longtail_burn::{LongtailLoss, Loss, Targets};

/// Cross-entropy that records the addresses of the logits and of the gradient buffer it got.
#[derive(Debug, Default)]
struct Probe {
    seen: Mutex<Option<(usize, Option<usize>)>>,
}

impl Loss<f32> for Probe {
    fn loss_into(
        &self,
        logits: &ArrayRef2<f32>,
        targets: &CoreTargets<'_, f32>,
        grad_out: Option<&mut ArrayRef2<f32>>,
    ) -> longtail::Result<f32> {
        let grad_ptr = grad_out.as_ref().map(|g| g.as_ptr() as usize);
        *self.seen.lock().unwrap() = Some((logits.as_ptr() as usize, grad_ptr));
        SoftmaxLoss::cross_entropy().loss_into(logits, targets, grad_out)
    }

    fn per_sample_into(
        &self,
        logits: &ArrayRef2<f32>,
        targets: &CoreTargets<'_, f32>,
        losses_out: &mut ArrayRef1<f32>,
        grad_out: Option<&mut ArrayRef2<f32>>,
    ) -> longtail::Result<()> {
        SoftmaxLoss::cross_entropy().per_sample_into(logits, targets, losses_out, grad_out)
    }

    fn reduction(&self) -> Reduction {
        Reduction::Mean
    }
}

fn flex_ptr(t: &Tensor<2>) -> usize {
    let ad = t.clone().try_into_primitive::<Autodiff<Flex>>().expect("an autodiff Flex tensor");
    let p = ad.primitive();
    p.storage::<f32>()[p.layout().start_offset()..].as_ptr() as usize
}

fn setup(device: &Device) -> (Tensor<2>, Targets) {
    let logits =
        Tensor::<2>::from_data(TensorData::new((0..12).map(|v| v as f32 * 0.1).collect(), [4, 3]), device);
    let labels = Tensor::<1, Int>::from_data([0, 1, 2, 1], device);
    (logits.require_grad(), Targets::labels(labels))
}

#[test]
fn flex_logits_are_read_in_place_and_the_gradient_is_not_copied() {
    let device = Device::flex().autodiff();
    let (logits, targets) = setup(&device);
    let probe = LongtailLoss::new(Probe::default());
    let value = probe.try_forward(logits.clone(), &targets).unwrap();
    let (seen_logits, seen_grad) = probe.inner().seen.lock().unwrap().expect("called");
    assert_eq!(seen_logits, flex_ptr(&logits), "the kernel read the Flex storage itself");
    let grad = logits.grad(&value.backward()).unwrap();
    let grad_ptr =
        grad.clone().try_into_primitive::<Flex>().map(|p| p.storage::<f32>().as_ptr() as usize).unwrap();
    assert_eq!(Some(grad_ptr), seen_grad, "backward returned the kernel's own gradient buffer");
}

#[test]
fn transposed_flex_logits_are_read_in_place() {
    let device = Device::flex().autodiff();
    // A [3, 4] leaf transposed to [4, 3]: a strided layout over the same storage.
    let leaf =
        Tensor::<2>::from_data(TensorData::new((0..12).map(|v| v as f32 * 0.1).collect(), [3, 4]), &device)
            .require_grad();
    let logits = leaf.clone().transpose();
    let probe = LongtailLoss::new(Probe::default());
    let labels = Targets::labels(Tensor::<1, Int>::from_data([0, 1, 2, 1], &device));
    let value = probe.try_forward(logits.clone(), &labels).unwrap();
    let (seen_logits, _) = probe.inner().seen.lock().unwrap().expect("called");
    assert_eq!(seen_logits, flex_ptr(&leaf), "the transposed view starts at the leaf's storage");
    // And the gradient reaches the leaf, transposed back, equal to the core's.
    let grad = leaf.grad(&value.backward()).unwrap().to_data().try_to_vec::<f32>().unwrap();
    let z = longtail::ndarray::Array2::from_shape_fn((4, 3), |(i, k)| (k * 4 + i) as f32 * 0.1);
    let (_, core) = SoftmaxLoss::<f32>::cross_entropy().loss_and_grad(&z, &[0, 1, 2, 1]).unwrap();
    let expected: Vec<f32> = core.t().iter().copied().collect();
    assert_eq!(grad, expected);
}

#[test]
#[allow(deprecated)]
fn ndarray_logits_are_read_in_place() {
    use burn::backend::ndarray::{NdArray, NdArrayTensor};
    let device = Device::ndarray().autodiff();
    let (logits, targets) = setup(&device);
    let ad = logits.clone().try_into_primitive::<Autodiff<NdArray>>().unwrap();
    let storage = match ad.primitive() {
        NdArrayTensor::F32(s) => s.view().as_ptr() as usize,
        other => panic!("f32 logits, got {other:?}"),
    };
    let probe = LongtailLoss::new(Probe::default());
    let value = probe.try_forward(logits.clone(), &targets).unwrap();
    let (seen_logits, seen_grad) = probe.inner().seen.lock().unwrap().expect("called");
    assert_eq!(seen_logits, storage);
    let grad = logits.grad(&value.backward()).unwrap().try_into_primitive::<NdArray>().unwrap();
    let grad_ptr = match &grad {
        NdArrayTensor::F32(s) => s.view().as_ptr() as usize,
        other => panic!("f32 gradient, got {other:?}"),
    };
    assert_eq!(Some(grad_ptr), seen_grad);
}
